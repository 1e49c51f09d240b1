//! Checks on `gtc deploy render`'s arguments, as the Kubernetes API server would
//! make them, but before anything is applied and with the flag's name in the
//! message: RFC 1123 names, label keys and values, image references, CIDRs,
//! resource quantities, Vault addresses.

use super::RenderError;

fn invalid(flag: &str, value: &str, why: impl std::fmt::Display) -> RenderError {
    RenderError::Invalid(format!("--{flag} {value:?}: {why}"))
}

fn is_label_chars(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// An RFC 1123 label (a namespace, a Service name): at most 63 characters of
/// `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
pub fn dns_label(flag: &str, value: &str) -> Result<(), RenderError> {
    if value.len() > 63 {
        return Err(invalid(
            flag,
            value,
            format!(
                "{} characters; a Kubernetes name (RFC 1123 label) has at most 63",
                value.len()
            ),
        ));
    }
    if !is_label_chars(value) {
        return Err(invalid(
            flag,
            value,
            "not a Kubernetes name (RFC 1123 label): lower-case letters, digits and '-', \
             starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

/// An RFC 1123 subdomain (a ConfigMap name): dot-separated labels, at most 253.
pub fn dns_subdomain(flag: &str, value: &str) -> Result<(), RenderError> {
    if value.len() > 253 || !value.split('.').all(is_label_chars) {
        return Err(invalid(
            flag,
            value,
            "not a Kubernetes object name (RFC 1123 subdomain): at most 253 characters, \
             dot-separated parts of lower-case letters, digits and '-'",
        ));
    }
    Ok(())
}

fn is_qualified_name_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A label value: empty, or at most 63 of `A-Za-z0-9-_.`, alphanumeric at both ends.
pub fn label_value(flag: &str, value: &str) -> Result<(), RenderError> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(invalid(
            flag,
            value,
            "not a valid label value: at most 63 letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit",
        ))
    }
}

/// `KEY=VALUE`, a label as Kubernetes accepts it (`prefix/name` keys allowed).
pub fn label(flag: &str, pair: &str) -> Result<(String, String), RenderError> {
    let Some((key, value)) = pair.split_once('=') else {
        return Err(invalid(flag, pair, "expected KEY=VALUE"));
    };
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_label_chars));
    if !prefix_ok || !is_qualified_name_part(name) {
        return Err(invalid(
            flag,
            pair,
            "not a valid label key: [prefix/]name, the name at most 63 letters, digits, \
             '-', '_' or '.', the prefix a DNS subdomain",
        ));
    }
    label_value(flag, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// A container image reference: `[registry[:port]/]path[:tag][@sha256:<64 hex>]`.
/// A digest pins the exact image (what checkov's CKV_K8S_43 asks for).
pub fn image(value: &str) -> Result<(), RenderError> {
    let bad = |why: &str| invalid("image", value, why);
    if value.is_empty() {
        return Err(bad("the image must not be empty"));
    }
    if value.len() > 4096 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("an image reference has no whitespace"));
    }
    let (name_tag, digest) = match value.split_once('@') {
        Some((name_tag, digest)) => (name_tag, Some(digest)),
        None => (value, None),
    };
    if let Some(digest) = digest {
        let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }) || digest.strip_prefix("sha512:").is_some_and(|hex| {
            hex.len() == 128
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !ok {
            return Err(bad(
                "the digest must be sha256: followed by 64 lower-case hex digits",
            ));
        }
    }
    // The tag is after the last ':' that follows the last '/' (a registry port
    // comes before a '/').
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.as_bytes()[0] != b'.'
            && tag.as_bytes()[0] != b'-'
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(bad(
                "the tag must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            ));
        }
    }
    let mut parts = name.split('/').peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        // The first part may be a registry host (with a port, dots, upper case).
        let registry =
            first && parts.peek().is_some() && (part.contains(['.', ':']) || part == "localhost");
        let ok = if registry {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        } else {
            !part.is_empty()
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        };
        if !ok {
            return Err(bad(
                "not an image reference: the repository path is lower-case letters, digits, \
                 '.', '_' and '-' in '/'-separated parts, e.g. registry.example.com/gtc:0.1.0 \
                 or registry.example.com/gtc@sha256:<digest>",
            ));
        }
        first = false;
    }
    Ok(())
}

/// A Vault address: `http://` or `https://`, a host, no user, query or fragment.
pub fn vault_addr(value: &str) -> Result<reqwest::Url, RenderError> {
    let url = reqwest::Url::parse(value)
        .map_err(|e| invalid("vault-addr", value, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            "vault-addr",
            value,
            "must start with http:// or https://",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("vault-addr", value, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "vault-addr",
            value,
            "must not carry a user or password",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err(invalid(
            "vault-addr",
            value,
            "must be scheme://host[:port] only (no path, query or fragment)",
        ));
    }
    Ok(url)
}

/// An IPv4 or IPv6 CIDR block in canonical form (no host bits set).
pub fn cidr(flag: &str, value: &str) -> Result<String, RenderError> {
    let Some((addr, prefix)) = value.split_once('/') else {
        return Err(invalid(
            flag,
            value,
            "expected a CIDR block such as 10.0.0.0/24 or 10.0.0.5/32",
        ));
    };
    let addr: std::net::IpAddr = addr
        .parse()
        .map_err(|_| invalid(flag, value, "not an IP address before the '/'"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| invalid(flag, value, format!("the prefix length must be 0..={max}")))?;
    // Clear the host bits: the address as a 128-bit number of `width` bits.
    let keep = |bits: u128, width: u32| {
        let host_bits = width - u32::from(prefix);
        if host_bits >= 128 {
            0
        } else {
            bits & !((1u128 << host_bits) - 1)
        }
    };
    let canonical = match addr {
        std::net::IpAddr::V4(v4) => {
            let bits = keep(u128::from(u32::from(v4)), 32);
            std::net::IpAddr::V4(u32::try_from(bits).unwrap_or_default().into())
        }
        std::net::IpAddr::V6(v6) => std::net::IpAddr::V6(keep(u128::from(v6), 128).into()),
    };
    if canonical != addr {
        return Err(invalid(
            flag,
            value,
            format!("host bits are set; did you mean {canonical}/{prefix}?"),
        ));
    }
    Ok(format!("{canonical}/{prefix}"))
}

/// A resource quantity (`100m`, `1`, `0.5`, `64Mi`, `1G`), as a number of base
/// units (cores or bytes) for comparisons.
pub fn quantity(flag: &str, value: &str) -> Result<f64, RenderError> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    let ok_number = !number.is_empty()
        && !number.starts_with('.')
        && !number.ends_with('.')
        && number.matches('.').count() <= 1;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => -1.0,
    };
    let parsed: Option<f64> = number.parse().ok();
    match parsed {
        Some(n) if ok_number && scale > 0.0 && n > 0.0 => Ok(n * scale),
        _ => Err(invalid(
            flag,
            value,
            "not a positive Kubernetes quantity such as 100m, 0.5, 1, 64Mi or 1Gi",
        )),
    }
}

/// Vault mount, prefix, key and namespace names: plain path segments (the same
/// rule the worker applies to `VAULT_KV_MOUNT` and friends).
pub fn vault_path(flag: &str, value: &str) -> Result<(), RenderError> {
    if crate::config::is_vault_path(value) {
        Ok(())
    } else {
        Err(invalid(
            flag,
            value,
            "expected path segments of letters, digits, '-', '_' or '.'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_kubernetes_checks_them() {
        for good in ["greentic", "a", "my-ns", "a1", &"a".repeat(63)] {
            dns_label("namespace", good).unwrap();
        }
        for bad in [
            "my_ns",
            "a.b",
            "-a",
            "a-",
            "",
            "Greentic",
            &"a".repeat(64),
            "a b",
        ] {
            let err = dns_label("namespace", bad).unwrap_err().to_string();
            assert!(err.starts_with("--namespace "), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
        dns_subdomain("vault-cacert-configmap", "vault-ca.v1").unwrap();
        assert!(dns_subdomain("x", "Vault_CA").is_err());
        assert!(dns_subdomain("x", "a..b").is_err());
        assert_eq!(
            label("vault-pod-label", "app.kubernetes.io/name=vault").unwrap(),
            ("app.kubernetes.io/name".into(), "vault".into())
        );
        label("x", "k8s-app=kube-dns").unwrap();
        label("x", "empty=").unwrap();
        for bad in [
            "novalue",
            "=v",
            "a/b/c=v",
            "k=-v",
            "Bad_Prefix/k=v",
            "k=a b",
        ] {
            assert!(label("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images_with_tags_and_digests() {
        let digest = format!("sha256:{}", "ab12".repeat(16));
        for good in [
            "gtc:demo".to_string(),
            "registry.example/gtc:0.1.0".into(),
            "localhost:5000/team/gtc".into(),
            format!("registry.example/gtc@{digest}"),
            format!("registry.example:443/gtc:1.2@{digest}"),
        ] {
            image(&good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            " ",
            "gtc :1",
            "Registry/GTC:1",
            "gtc:",
            "gtc@sha256:abc",
            "gtc:-x",
            "a//b",
        ] {
            let err = image(bad).unwrap_err().to_string();
            assert!(err.starts_with("--image "), "{bad}: {err}");
        }
    }

    #[test]
    fn addresses_blocks_and_quantities() {
        vault_addr("https://vault.example.com").unwrap();
        vault_addr("http://10.0.0.5:8200/").unwrap();
        for bad in [
            "ftp://vault.example.com",
            "vault:8200",
            "https://u:p@vault",
            "https://vault/v1",
            "https://vault?x=1",
        ] {
            let err = vault_addr(bad).unwrap_err().to_string();
            assert!(err.starts_with("--vault-addr "), "{bad}: {err}");
        }
        assert_eq!(cidr("c", "10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(cidr("c", "10.0.0.5/32").unwrap(), "10.0.0.5/32");
        assert_eq!(cidr("c", "fd00::/64").unwrap(), "fd00::/64");
        let err = cidr("vault-cidr", "10.0.0.5/24").unwrap_err().to_string();
        assert!(err.contains("did you mean 10.0.0.0/24"), "{err}");
        for bad in ["10.0.0.5", "10.0.0.0/33", "vault/24", "10.0.0/8"] {
            assert!(cidr("c", bad).is_err(), "{bad}");
        }
        assert_eq!(quantity("q", "100m").unwrap(), 0.1);
        assert_eq!(quantity("q", "64Mi").unwrap(), 64.0 * 1024.0 * 1024.0);
        assert_eq!(quantity("q", "0.5").unwrap(), 0.5);
        for bad in ["", "-1", "1.5.2", "10 Mi", "1x", "0", ".5"] {
            assert!(quantity("q", bad).is_err(), "{bad}");
        }
    }
}
