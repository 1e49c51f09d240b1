//! The `gtc` binary: parses the command line and hands each command to the wing
//! that owns it. Exit status: 0 ok, 1 runtime failure, 2 bad configuration
//! (`gtc::app::exit_status`).

use clap::Parser as _;
use gtc::app::{self, shutdown_signal};
use gtc::bundle::commands as bundle;
use gtc::cli::{BundleCommand, Cli, Command, DeployCommand, OpCommand, SecretsCommand};
use gtc::config::ProcessEnv;
use gtc::ops::{deploy, doctor, secrets_admin};
use std::process::ExitCode;

/// mimalloc, not glibc's malloc: guests make the host allocate and free on every
/// request (header maps, bodies, resource-table entries), often on one worker
/// thread and freed on another, and glibc then serialises the threads on its
/// arena locks: under a header-map flood a neighbour's request waited on those
/// locks for tens of milliseconds (BENCHMARKS.md, "Neighbour under attack").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let env = ProcessEnv;
    match cli.command {
        Command::Serve(args) => app::serve(&env, *args, shutdown_signal()).await?,
        Command::Route(args) => app::route(args, shutdown_signal()).await?,
        Command::Deploy { command } => match *command {
            DeployCommand::Render(args) => emit(&deploy::render_yaml(&args.into_config()?)?)?,
        },
        Command::Bundle { command } => match command {
            BundleCommand::Inspect { dir } => emit(&bundle::inspect(&dir)?)?,
            BundleCommand::Check {
                dirs,
                compile,
                share,
            } => {
                let (report, outcome) = bundle::check_all(
                    &dirs,
                    &app::tool_runtime(compile.setting())?,
                    &share.share_sealed,
                );
                emit(&report)?;
                outcome?
            }
            BundleCommand::Compile { dirs, compile } => {
                let (report, outcome) =
                    bundle::compile_all(&dirs, &app::tool_runtime(compile.setting())?);
                emit(&report)?;
                outcome?
            }
        },
        Command::New(args) => emit(&bundle::new(args.lang, &args.name, args.dir.as_deref())?)?,
        Command::Doctor(args) => {
            let (report, outcome) = doctor::command(&env, &args.bundles).await;
            emit(&report)?;
            outcome?
        }
        Command::Op {
            command: OpCommand::Secrets { command },
        } => match command {
            SecretsCommand::Put {
                path,
                from_file,
                env: env_flag,
            } => {
                secrets_admin::put_command(&env, &path, env_flag.as_deref(), from_file.as_deref())
                    .await?
            }
            SecretsCommand::Ls {
                prefix,
                env: env_flag,
                check,
            } => {
                emit(&secrets_admin::ls_command(&env, &prefix, env_flag.as_deref(), check).await?)?
            }
            SecretsCommand::Rewrap {
                prefix,
                env: env_flag,
                from_key,
            } => {
                let (report, outcome) =
                    secrets_admin::rewrap_command(&env, &prefix, env_flag.as_deref(), &from_key)
                        .await?;
                emit(&report)?;
                outcome?
            }
        },
    }
    Ok(())
}

/// Writes a command's output to stdout. A closed pipe (`gtc deploy render | kubectl
/// apply -f -` where kubectl exits early, `| head`) or a full disk is an error like
/// any other: one line, exit status 1 — never a panic.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| anyhow::anyhow!("cannot write the output to standard output: {e}"))
}

/// The error and its causes on one line, each cause once: an error whose message
/// already quotes its source (`cannot read X: No such file…`) does not repeat it.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    app::init_logging();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command
        && let Some(threads) = args.worker_threads
    {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::from(app::exit_status(&error))
        }
    }
}
