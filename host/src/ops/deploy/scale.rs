//! Scale and availability: requests and limits, the PodDisruptionBudget, the
//! HorizontalPodAutoscaler (autoscaling/v2, CPU) and topology spread.
//!
//! Defaults are for production: a PDB allowing one pod down at a time, spread
//! across zones and nodes as far as the cluster allows (`ScheduleAnyway`, so a
//! one-node cluster still schedules), requests that reserve what an idle worker
//! uses plus headroom, and limits that bound a runaway. Autoscaling is off unless
//! asked for (it needs a metrics server).

use super::validate;
use super::{DeployConfig, RenderError, ScopeNames, meta};
use crate::ops::deploy::k8s::*;
use crate::secrets::scope::Segment;
use std::collections::BTreeMap;

/// Requests and limits of one container. `cpu_limit: None` leaves CPU unbounded
/// (no throttling; the request still reserves a share).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceFlags {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: Option<String>,
    pub memory_limit: String,
}

impl ResourceFlags {
    pub fn worker_default() -> Self {
        Self {
            cpu_request: "250m".into(),
            memory_request: "128Mi".into(),
            cpu_limit: Some("2".into()),
            memory_limit: "512Mi".into(),
        }
    }

    pub fn router_default() -> Self {
        Self {
            cpu_request: "50m".into(),
            memory_request: "32Mi".into(),
            cpu_limit: Some("1".into()),
            memory_limit: "128Mi".into(),
        }
    }

    /// Checks every quantity (and that no request exceeds its limit, which the
    /// API server would refuse); `who` is `worker` or `router`, for flag names.
    pub fn resources(&self, who: &str) -> Result<Resources, RenderError> {
        let flag = |what: &str| format!("{who}-{what}");
        let cpu_request = validate::quantity(&flag("cpu-request"), &self.cpu_request)?;
        let memory_request = validate::quantity(&flag("memory-request"), &self.memory_request)?;
        let memory_limit = validate::quantity(&flag("memory-limit"), &self.memory_limit)?;
        if memory_request > memory_limit {
            return Err(RenderError::Invalid(format!(
                "--{} {} exceeds --{} {}",
                flag("memory-request"),
                self.memory_request,
                flag("memory-limit"),
                self.memory_limit
            )));
        }
        let mut limits = BTreeMap::from([("memory".to_string(), self.memory_limit.clone())]);
        if let Some(cpu_limit) = &self.cpu_limit {
            let limit = validate::quantity(&flag("cpu-limit"), cpu_limit)?;
            if cpu_request > limit {
                return Err(RenderError::Invalid(format!(
                    "--{} {} exceeds --{} {cpu_limit}",
                    flag("cpu-request"),
                    self.cpu_request,
                    flag("cpu-limit")
                )));
            }
            limits.insert("cpu".into(), cpu_limit.clone());
        }
        Ok(Resources {
            requests: BTreeMap::from([
                ("cpu".to_string(), self.cpu_request.clone()),
                ("memory".to_string(), self.memory_request.clone()),
            ]),
            limits,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Spread {
    /// No topology spread constraints.
    Off,
    /// Spread across zones and nodes when possible (ScheduleAnyway).
    Preferred,
    /// Never two pods of a Deployment on one node (DoNotSchedule); zones preferred.
    Required,
}

#[derive(Debug, Clone)]
pub struct ScaleFlags {
    /// `None`: no PodDisruptionBudget.
    pub pdb_max_unavailable: Option<i32>,
    /// `Some(max)`: a HorizontalPodAutoscaler from `--replicas` up to `max`.
    pub autoscale_max: Option<i32>,
    pub autoscale_cpu_percent: i32,
    pub spread: Spread,
    pub worker: ResourceFlags,
    pub router: ResourceFlags,
}

impl Default for ScaleFlags {
    fn default() -> Self {
        Self {
            pdb_max_unavailable: Some(1),
            autoscale_max: None,
            autoscale_cpu_percent: 70,
            spread: Spread::Preferred,
            worker: ResourceFlags::worker_default(),
            router: ResourceFlags::router_default(),
        }
    }
}

/// Checks the replica and autoscaling numbers together.
pub fn check(config: &DeployConfig) -> Result<(), RenderError> {
    let scale = &config.scale;
    if config.replicas < 0 {
        return Err(RenderError::Invalid(format!(
            "--replicas {}: must be 0 or more",
            config.replicas
        )));
    }
    if let Some(max) = scale.autoscale_max {
        if config.replicas < 1 {
            return Err(RenderError::Invalid(
                "--autoscale-max needs --replicas 1 or more (the autoscaler's minimum)".into(),
            ));
        }
        if max < config.replicas {
            return Err(RenderError::Invalid(format!(
                "--autoscale-max {max} is below --replicas {}",
                config.replicas
            )));
        }
        if !(1..=1000).contains(&scale.autoscale_cpu_percent) {
            return Err(RenderError::Invalid(format!(
                "--autoscale-cpu-percent {}: must be 1..=1000",
                scale.autoscale_cpu_percent
            )));
        }
    }
    if let Some(n) = scale.pdb_max_unavailable
        && n < 1
    {
        return Err(RenderError::Invalid(format!(
            "--pdb-max-unavailable {n}: must be 1 or more (0 would block every node drain; \
             use --no-pdb to render none)"
        )));
    }
    Ok(())
}

/// The Deployment's replica count: left to the autoscaler when there is one.
pub fn replicas(config: &DeployConfig) -> Option<i32> {
    match config.scale.autoscale_max {
        Some(_) => None,
        None => Some(config.replicas),
    }
}

/// Spread constraints for the pods `selector` picks (one Deployment's own pods).
pub fn spread(config: &DeployConfig, selector: LabelSelector) -> Vec<TopologySpreadConstraint> {
    let constraint = |key: &str, hard: bool| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.to_string(),
        when_unsatisfiable: if hard {
            "DoNotSchedule"
        } else {
            "ScheduleAnyway"
        }
        .to_string(),
        label_selector: selector.clone(),
    };
    match config.scale.spread {
        Spread::Off => Vec::new(),
        Spread::Preferred => vec![
            constraint("topology.kubernetes.io/zone", false),
            constraint("kubernetes.io/hostname", false),
        ],
        Spread::Required => vec![
            constraint("topology.kubernetes.io/zone", false),
            constraint("kubernetes.io/hostname", true),
        ],
    }
}

/// The PDB and HPA of one Deployment (`component`, named `deployment`, of a team
/// or not), as configured: named like it, labelled and selecting like it.
pub fn objects(
    config: &DeployConfig,
    names: &ScopeNames,
    component: &str,
    deployment: &str,
    team: Option<&Segment>,
) -> Vec<Object> {
    let mut out = Vec::new();
    let labels = names.labels(component, deployment, team);
    if let Some(max_unavailable) = config.scale.pdb_max_unavailable {
        out.push(Object::PodDisruptionBudget(PodDisruptionBudget {
            api_version: "policy/v1".into(),
            kind: "PodDisruptionBudget".into(),
            metadata: meta(config, deployment, labels.clone()),
            spec: PodDisruptionBudgetSpec {
                max_unavailable,
                selector: names.instance(component, deployment),
            },
        }));
    }
    if let Some(max) = config.scale.autoscale_max {
        out.push(Object::HorizontalPodAutoscaler(HorizontalPodAutoscaler {
            api_version: "autoscaling/v2".into(),
            kind: "HorizontalPodAutoscaler".into(),
            metadata: meta(config, deployment, labels),
            spec: HpaSpec {
                scale_target_ref: ScaleTarget {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: deployment.to_string(),
                },
                min_replicas: config.replicas,
                max_replicas: max,
                metrics: vec![HpaMetric {
                    type_: "Resource".into(),
                    resource: HpaResourceMetric {
                        name: "cpu".into(),
                        target: HpaTarget {
                            type_: "Utilization".into(),
                            average_utilization: config.scale.autoscale_cpu_percent,
                        },
                    },
                }],
            },
        }));
    }
    out
}
