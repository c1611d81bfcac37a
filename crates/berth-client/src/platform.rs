//! Platforms (`os/arch[/variant]`) as image-spec `image-index.md` describes them,
//! the host's platform, and choosing a manifest from an index.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// An image platform: `os/architecture[/variant]` in image-spec terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `os`, e.g. `linux`.
    pub os: String,
    /// `architecture`, e.g. `amd64` (GOARCH values).
    pub architecture: String,
    /// `variant`, e.g. `v8`, when given.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on, in GOOS/GOARCH terms.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Read a `platform` object (an index entry's, or a config's top-level fields).
    pub fn from_json(v: &Value) -> Option<Platform> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Platform {
            os: s("os")?,
            architecture: s("architecture")?,
            variant: s("variant").filter(|v| !v.is_empty()),
        })
    }

    /// Whether an image of platform `candidate` satisfies this wanted platform: same
    /// os and architecture; the variant must match when this one names it (`arm64`
    /// treats a missing variant as `v8`, as containerd does).
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        let norm = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        match &self.variant {
            None => true,
            Some(_) => norm(self) == norm(candidate),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Why a platform string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
pub struct PlatformError {
    /// What was given.
    pub input: String,
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PlatformError {
            input: s.to_owned(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(err());
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

/// The index entries (position, platform) that carry a platform, in index order.
pub fn index_platforms(index: &Value) -> Vec<(usize, Platform)> {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(i, m)| Some((i, Platform::from_json(m.get("platform")?)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The position of the first index entry matching `wanted` (an exact variant match
/// preferred), or `Err` with every platform the index lists.
pub fn select(index: &Value, wanted: &Platform) -> Result<usize, Vec<String>> {
    let all = index_platforms(index);
    let exact = all.iter().find(|(_, p)| p == wanted);
    let loose = all.iter().find(|(_, p)| wanted.matches(p));
    match exact.or(loose) {
        Some((i, _)) => Ok(*i),
        None => {
            let mut names: Vec<String> = all.iter().map(|(_, p)| p.to_string()).collect();
            names.dedup();
            Err(names)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_and_print() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            "Linux/AMD64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "a/b/c/d",
            "linux/am d64",
            "linux//v7",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn select_from_index() {
        // image-spec image-index.md: `platform` with `architecture`, `os`, `variant`.
        let index = json!({"manifests": [
            {"platform": {"os": "linux", "architecture": "amd64"}},
            {"platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
            {"platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {"platform": {"os": "linux", "architecture": "arm64"}},
            {"annotations": {}},
        ]});
        let pick = |s: &str| select(&index, &s.parse().unwrap());
        assert_eq!(pick("linux/amd64"), Ok(0));
        assert_eq!(pick("linux/arm/v7"), Ok(2));
        assert_eq!(pick("linux/arm"), Ok(1));
        assert_eq!(pick("linux/arm64/v8"), Ok(3));
        assert_eq!(
            pick("linux/s390x"),
            Err(vec![
                "linux/amd64".to_owned(),
                "linux/arm/v6".to_owned(),
                "linux/arm/v7".to_owned(),
                "linux/arm64".to_owned()
            ])
        );
        assert_eq!(pick("windows/amd64").map_err(|v| v.len()), Err(4));
    }

    #[test]
    fn host_is_well_formed() {
        let h = Platform::host();
        assert!(!h.os.is_empty() && !h.architecture.is_empty());
        assert_eq!(h.to_string().parse::<Platform>().unwrap(), h);
    }
}
