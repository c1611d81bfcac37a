//! Image references as users type them (`alpine`, `localhost:5000/a/b:tag@sha256:…`),
//! parsed the way docker does, and image *locations*: a registry reference or an OCI
//! image layout directory (`oci:DIR[:TAG]`).
//!
//! The grammar is docker's (`github.com/distribution/reference`):
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ registry "/" ] repository
//! registry  := host [ ":" port ]
//! host      := domain-name | IPv4address | "[" IPv6address "]"
//! ```
//!
//! The repository, tag and digest grammars are those of [`RepoName`], [`Tag`] and
//! [`Digest`]; this module only splits the string and decides which part is which.
//!
//! Docker's rule for the registry: the text before the first `/` is a registry host if
//! it contains `.` or `:` or is exactly `localhost`; otherwise the reference is on
//! Docker Hub (`docker.io`), where a one-component repository gets the `library/`
//! prefix of the official images. A reference with no `/` at all is *always* a Docker
//! Hub repository, even when it looks like a host.
//!
//! Where berth deliberately differs from docker (every case is stricter or more
//! canonical, never more permissive about what it fetches):
//!
//! - the registry host is ASCII-lowercased, an IPv6 literal is written in its RFC 5952
//!   form and a port loses leading zeros, so equal registries compare equal (docker
//!   keeps the text as typed);
//! - a port must be 1–65535 and a host whose last label is numeric must be a valid IPv4
//!   address (docker accepts `localhost:99999` and `999.1.1.1`);
//! - a first component with uppercase letters and no `.`/`:` (`User/app`) is an
//!   uppercase-repository error; current docker instead takes it for a registry host
//!   named `User`;
//! - `registry-1.docker.io` (Docker Hub's API host) is normalised to `docker.io` like
//!   `index.docker.io`; docker only normalises the latter.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::name::{MAX_NAME_LEN, MAX_TAG_LEN, NameError, Reference, RepoName, Tag};

/// The registry Docker Hub references are displayed with.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is actually served from.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Other names of Docker Hub, normalised to [`DOCKER_HUB`] when parsing.
const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", DOCKER_HUB_API_HOST];
/// The namespace of Docker Hub's official images.
const OFFICIAL_PREFIX: &str = "library/";
/// The tag used when a reference has neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// Prefix of an OCI image layout location (`oci:DIR[:TAG]`).
pub const LAYOUT_PREFIX: &str = "oci:";
/// Prefix of an explicit registry location (`docker://REF`, as skopeo writes it).
pub const REGISTRY_PREFIX: &str = "docker://";

/// Why a string is not a valid image reference or location. Every message names the
/// input it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The input is empty.
    #[error("image reference is empty")]
    Empty,
    /// The input is exactly 64 lowercase hex characters, which docker reserves for
    /// image ids.
    #[error(
        "image reference {0:?} is 64 hex characters, which is reserved for image ids; add a tag or a registry to use it as a name"
    )]
    HexIdentifier(String),
    /// There is a tag or digest but nothing before it (`:v1`, `@sha256:…`).
    #[error("image reference {0:?} has no repository name")]
    MissingName(String),
    /// The registry host is neither a DNS name, an IPv4 address nor a bracketed IPv6
    /// address.
    #[error(
        "image reference {input:?} has an invalid registry host {host:?} (want a DNS name, an IPv4 address or a bracketed IPv6 address)"
    )]
    BadHost {
        /// The whole input.
        input: String,
        /// The host part.
        host: String,
    },
    /// The registry port is not a number from 1 to 65535.
    #[error("image reference {input:?} has an invalid registry port {port:?} (want 1-65535)")]
    BadPort {
        /// The whole input.
        input: String,
        /// The port part.
        port: String,
    },
    /// The repository name contains uppercase letters.
    #[error("image reference {input:?}: repository name {name:?} must be lowercase")]
    UppercaseName {
        /// The whole input.
        input: String,
        /// The repository name (with any `library/` prefix added).
        name: String,
    },
    /// The repository name breaks the distribution-spec grammar.
    #[error("image reference {input:?} has an invalid repository name: {source}")]
    BadName {
        /// The whole input.
        input: String,
        /// Why [`RepoName`] rejected it.
        source: NameError,
    },
    /// The repository name is longer than [`MAX_NAME_LEN`].
    #[error(
        "image reference {input:?} has a repository name {len} characters long; at most {MAX_NAME_LEN} are allowed"
    )]
    NameTooLong {
        /// The whole input.
        input: String,
        /// Length of the repository name (with any `library/` prefix added).
        len: usize,
    },
    /// The tag breaks `[a-zA-Z0-9_][a-zA-Z0-9._-]*`.
    #[error(
        "image reference {input:?} has an invalid tag {tag:?} (want [a-zA-Z0-9_][a-zA-Z0-9._-]*)"
    )]
    BadTag {
        /// The whole input.
        input: String,
        /// The tag part.
        tag: String,
    },
    /// The tag is longer than [`MAX_TAG_LEN`].
    #[error(
        "image reference {input:?} has a tag {len} characters long; at most {MAX_TAG_LEN} are allowed"
    )]
    TagTooLong {
        /// The whole input.
        input: String,
        /// Length of the tag.
        len: usize,
    },
    /// The part after `@` is not a valid digest.
    #[error("image reference {input:?} has an invalid digest: {source}")]
    BadDigest {
        /// The whole input.
        input: String,
        /// Why [`Digest`] rejected it.
        source: DigestError,
    },
    /// An `oci:` location names no directory (`oci:`, `oci::v1`).
    #[error("layout reference {0:?} names no directory")]
    EmptyLayoutDir(String),
}

/// What a reference pins: a tag, a digest or both. Keeping this private makes a
/// reference with neither unrepresentable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pin {
    Tag(Tag),
    Digest(Digest),
    Both(Tag, Digest),
}

/// A reference to an image in a registry: `registry/repository[:tag][@digest]`.
///
/// Always has a tag, a digest or both: parsing a reference with neither gives it the
/// tag `latest` and records that it did ([`tag_defaulted`](Self::tag_defaulted)).
/// Equality and hashing ignore that record: `alpine` and `alpine:latest` are the same
/// image.
#[derive(Debug, Clone)]
pub struct ImageReference {
    /// `host[:port]`, normalised (lowercase; Docker Hub aliases become `docker.io`).
    registry: String,
    repository: RepoName,
    pin: Pin,
    tag_defaulted: bool,
}

impl PartialEq for ImageReference {
    fn eq(&self, other: &Self) -> bool {
        self.registry == other.registry
            && self.repository == other.repository
            && self.pin == other.pin
    }
}

impl Eq for ImageReference {}

impl Hash for ImageReference {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.registry.hash(state);
        self.repository.hash(state);
        self.pin.hash(state);
    }
}

impl ImageReference {
    /// A reference built from parts. `registry` must be something parsing would take
    /// for a registry (it contains `.` or `:` or is `localhost`), so that the result
    /// displays as a string that parses back to it; it is normalised like a parsed one
    /// (`index.docker.io` → `docker.io`, and a one-component Docker Hub repository gets
    /// `library/`). With neither a tag nor a digest the tag is `latest`, recorded as
    /// defaulted.
    pub fn new(
        registry: &str,
        repository: RepoName,
        tag: Option<Tag>,
        digest: Option<Digest>,
    ) -> Result<Self, ReferenceError> {
        if !looks_like_registry(registry) {
            return Err(ReferenceError::BadHost {
                input: registry.to_owned(),
                host: registry.to_owned(),
            });
        }
        let registry = normalise_registry(registry, registry)?;
        let repository = if registry == DOCKER_HUB && !repository.as_str().contains('/') {
            official(registry.as_str(), repository.as_str())?
        } else {
            repository
        };
        let (pin, tag_defaulted) = make_pin(registry.as_str(), tag, digest)?;
        Ok(ImageReference {
            registry,
            repository,
            pin,
            tag_defaulted,
        })
    }

    /// The registry, `host[:port]`: `docker.io` for Docker Hub, otherwise as written
    /// but lowercased, with an IPv6 host in brackets (`[::1]:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository within the registry (`library/alpine`).
    pub fn repository(&self) -> &RepoName {
        &self.repository
    }

    /// The tag, if any: written in the input, or `latest` when the input had neither a
    /// tag nor a digest.
    pub fn tag(&self) -> Option<&Tag> {
        match &self.pin {
            Pin::Tag(t) | Pin::Both(t, _) => Some(t),
            Pin::Digest(_) => None,
        }
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        match &self.pin {
            Pin::Digest(d) | Pin::Both(_, d) => Some(d),
            Pin::Tag(_) => None,
        }
    }

    /// True when the input had neither a tag nor a digest and [`tag`](Self::tag) is
    /// the default `latest`.
    pub fn tag_defaulted(&self) -> bool {
        self.tag_defaulted
    }

    /// What to ask the registry for: the digest when there is one (so `name:tag@digest`
    /// pulls the digest and ignores the tag, as docker does), otherwise the tag.
    pub fn manifest_reference(&self) -> Reference {
        match &self.pin {
            Pin::Digest(d) | Pin::Both(_, d) => Reference::Digest(d.clone()),
            Pin::Tag(t) => Reference::Tag(t.clone()),
        }
    }

    /// The host (and port) to send registry API requests to: `registry-1.docker.io` for
    /// Docker Hub, the registry itself otherwise.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The short form docker prints: without `docker.io/`, and without `library/` for
    /// official images (`alpine:latest`, `user/app:1.0`, `localhost:5000/a:latest`).
    ///
    /// Unlike docker, `docker.io/` is kept when dropping it would change the meaning
    /// (`docker.io/foo.bar/app`, whose first component would read as a host), so the
    /// familiar form always parses back to the same reference.
    pub fn familiar(&self) -> String {
        let repo = self.repository.as_str();
        let mut out = String::new();
        if self.registry == DOCKER_HUB {
            match repo.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => out.push_str(rest),
                _ if repo.split('/').next().is_some_and(looks_like_registry) => {
                    out.push_str(DOCKER_HUB);
                    out.push('/');
                    out.push_str(repo);
                }
                _ => out.push_str(repo),
            }
        } else {
            out.push_str(&self.registry);
            out.push('/');
            out.push_str(repo);
        }
        self.push_pin(&mut out);
        out
    }

    /// This reference pinned to `digest`, replacing any digest it had.
    ///
    /// The tag is kept (`host/repo:tag@sha256:…`): it records which tag the digest was
    /// resolved from, and since the digest is what gets pulled the tag cannot change
    /// the image. docker accepts `name:tag@digest` and pulls the digest, as
    /// [`manifest_reference`](Self::manifest_reference) does. A tool that rejects the
    /// combined form (some skopeo versions) needs the digest-only form built with
    /// [`new`](Self::new).
    pub fn with_digest(&self, digest: Digest) -> ImageReference {
        let pin = match &self.pin {
            Pin::Tag(t) | Pin::Both(t, _) => Pin::Both(t.clone(), digest),
            Pin::Digest(_) => Pin::Digest(digest),
        };
        ImageReference {
            pin,
            ..self.clone()
        }
    }

    /// Whether to talk plain HTTP to this registry: only when `insecure_flag` is set
    /// or the host is loopback — `localhost` (any port, any case), an address in
    /// `127.0.0.0/8`, or `::1` (also as the IPv4-mapped `::ffff:127.x.y.z`).
    ///
    /// The host is parsed as an IP address, never prefix-matched: `127.0.0.1.evil.com`
    /// and `localhost.evil.com` are ordinary names and get HTTPS.
    pub fn allows_plain_http(&self, insecure_flag: bool) -> bool {
        insecure_flag || is_loopback_registry(&self.registry)
    }

    fn push_pin(&self, out: &mut String) {
        if let Some(t) = self.tag() {
            out.push(':');
            out.push_str(t.as_str());
        }
        if let Some(d) = self.digest() {
            out.push('@');
            out.push_str(&d.to_string());
        }
    }
}

/// Docker's test for the component before the first `/`: a registry if it contains
/// `.` or `:` (a domain, an IPv4 address, a port, an IPv6 literal) or is `localhost`.
fn looks_like_registry(first: &str) -> bool {
    first == "localhost" || first.contains(['.', ':'])
}

/// `library/<name>` for a one-component Docker Hub repository.
fn official(input: &str, name: &str) -> Result<RepoName, ReferenceError> {
    let full = format!("{OFFICIAL_PREFIX}{name}");
    parse_repo(input, &full)
}

fn parse_repo(input: &str, path: &str) -> Result<RepoName, ReferenceError> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        // docker: "invalid reference format: repository name (library/Alpine) must be
        // lowercase".
        return Err(ReferenceError::UppercaseName {
            input: input.to_owned(),
            name: path.to_owned(),
        });
    }
    path.parse().map_err(|e| match e {
        NameError::NameTooLong(len) => ReferenceError::NameTooLong {
            input: input.to_owned(),
            len,
        },
        source => ReferenceError::BadName {
            input: input.to_owned(),
            source,
        },
    })
}

fn parse_tag(input: &str, tag: &str) -> Result<Tag, ReferenceError> {
    tag.parse().map_err(|_| {
        if tag.len() > MAX_TAG_LEN && valid_tag_chars(tag) {
            ReferenceError::TagTooLong {
                input: input.to_owned(),
                len: tag.len(),
            }
        } else {
            ReferenceError::BadTag {
                input: input.to_owned(),
                tag: tag.to_owned(),
            }
        }
    })
}

/// The tag grammar without its length limit, to tell "too long" from "malformed".
fn valid_tag_chars(tag: &str) -> bool {
    let b = tag.as_bytes();
    b.first()
        .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn make_pin(
    input: &str,
    tag: Option<Tag>,
    digest: Option<Digest>,
) -> Result<(Pin, bool), ReferenceError> {
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => (Pin::Both(t, d), false),
        (Some(t), None) => (Pin::Tag(t), false),
        (None, Some(d)) => (Pin::Digest(d), false),
        (None, None) => (Pin::Tag(parse_tag(input, DEFAULT_TAG)?), true),
    })
}

/// Validate `host[:port]` and put it in canonical form: lowercase, IPv6 in RFC 5952
/// form inside brackets, port without leading zeros, Docker Hub aliases → `docker.io`.
fn normalise_registry(input: &str, registry: &str) -> Result<String, ReferenceError> {
    let bad_host = |host: &str| ReferenceError::BadHost {
        input: input.to_owned(),
        host: host.to_owned(),
    };
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| bad_host(registry))?;
        let addr: Ipv6Addr = inside.parse().map_err(|_| bad_host(registry))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| bad_host(registry))?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        };
        if !valid_host_name(host) {
            return Err(bad_host(host));
        }
        (host.to_ascii_lowercase(), port)
    };
    let Some(port) = port else {
        if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
            return Ok(DOCKER_HUB.to_owned());
        }
        return Ok(host);
    };
    match port.parse::<u16>() {
        Ok(n) if n != 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(format!("{host}:{n}")),
        _ => Err(ReferenceError::BadPort {
            input: input.to_owned(),
            port: port.to_owned(),
        }),
    }
}

/// A DNS name as docker's grammar allows it (labels of letters, digits and inner `-`,
/// separated by `.`) or a dotted-quad IPv4 address.
fn valid_host_name(host: &str) -> bool {
    fn label(l: &str) -> bool {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    }
    if host.len() > 253 || !host.split('.').all(label) {
        return false;
    }
    // No top-level domain is numeric, so a name ending in a numeric label can only be
    // an IPv4 address: `999.1.1.1` and `127.1` are rejected rather than looked up.
    let last = host.rsplit('.').next().unwrap_or(host);
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return host.parse::<Ipv4Addr>().is_ok();
    }
    true
}

/// Whether a normalised registry's host is loopback.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(inside, _)| inside),
        None => registry.split_once(':').map_or(registry, |(h, _)| h),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    // `to_canonical` turns `::ffff:127.0.0.1` into `127.0.0.1`; `is_loopback` is then
    // 127.0.0.0/8 for IPv4 and exactly `::1` for IPv6.
    host.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // docker: "invalid repository name (…), cannot specify 64-byte hexadecimal
        // strings" — a bare image id is never taken for a name. With a tag or a
        // registry it is an ordinary name again.
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReferenceError::HexIdentifier(input.to_owned()));
        }

        // The digest is everything after the first `@`; no other part may contain one.
        let (name_tag, digest) = match input.split_once('@') {
            Some((nt, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::BadDigest {
                        input: input.to_owned(),
                        source,
                    })?;
                (nt, Some(digest))
            }
            None => (input, None),
        };

        // The tag follows the last `:` that comes after the last `/`; a `:` before a
        // `/` is a registry port (`localhost:5000/a`). docker's surprise: with no `/`
        // at all, `localhost:5000` is the Docker Hub image `library/localhost` at tag
        // `5000`.
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|s| colon > s) => {
                let tag = parse_tag(input, &name_tag[colon + 1..])?;
                (&name_tag[..colon], Some(tag))
            }
            _ => (name_tag, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::MissingName(input.to_owned()));
        }

        // docker's surprise: a one-component name is always a Docker Hub repository,
        // even `localhost` or `example.com` (docker.io/library/example.com).
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => {
                (normalise_registry(input, first)?, rest)
            }
            _ => (DOCKER_HUB.to_owned(), name),
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            official(input, path)?
        } else {
            parse_repo(input, path)?
        };
        let (pin, tag_defaulted) = make_pin(input, tag, digest)?;
        Ok(ImageReference {
            registry,
            repository,
            pin,
            tag_defaulted,
        })
    }
}

impl fmt::Display for ImageReference {
    /// The canonical form, `registry/repository[:tag][@digest]`
    /// (`docker.io/library/alpine:latest`). It parses back to an equal reference.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = format!("{}/{}", self.registry, self.repository);
        self.push_pin(&mut out);
        f.write_str(&out)
    }
}

/// Where an image is: in a registry, or in an OCI image layout directory.
///
/// Parsed from `oci:DIR[:TAG]` (a layout), `docker://REF` (a registry reference,
/// skopeo style) or any other string (a registry reference, docker style). Because
/// `oci:` is checked first, a Docker Hub image named `oci` must be written
/// `docker://oci:TAG` or `docker.io/library/oci:TAG`, and a registry host named `oci`
/// as `docker://oci:5000/…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// An image in a registry.
    Registry(ImageReference),
    /// An image in an OCI image layout.
    Layout {
        /// The layout directory, as written.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the image in `index.json`; `None`
        /// when the layout is expected to hold exactly one image.
        tag: Option<String>,
    },
}

/// A ref name that can follow the last `:` of an `oci:` location: one component of the
/// image-spec `org.opencontainers.image.ref.name` grammar
/// (`alphanum (separator alphanum)*`, alphanum `[A-Za-z0-9]+`, separator `[-._@+]` or
/// `--`), without `:` (the split is on the last one) and without `/`.
fn valid_layout_tag(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let sep_len = if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
            2
        } else if matches!(b[i], b'-' | b'.' | b'_' | b'@' | b'+') {
            1
        } else {
            return false;
        };
        i += sep_len;
        // Separators sit between alphanumerics; the last byte is alphanumeric, so
        // `i` is in bounds whenever this check matters.
        if !b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
            return false;
        }
    }
    true
}

impl FromStr for Location {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = input.strip_prefix(REGISTRY_PREFIX) {
            return rest.parse().map(Location::Registry);
        }
        let Some(rest) = input.strip_prefix(LAYOUT_PREFIX) else {
            return input.parse().map(Location::Registry);
        };
        // Split on the last `:` only when what follows is a valid ref name, so a
        // directory may itself contain `:` (`oci:/tmp/a:b/c` is the directory
        // `/tmp/a:b/c`). skopeo instead splits on the first `:`.
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) if valid_layout_tag(tag) => (dir, Some(tag.to_owned())),
            _ => (rest, None),
        };
        if dir.is_empty() {
            return Err(ReferenceError::EmptyLayoutDir(input.to_owned()));
        }
        Ok(Location::Layout {
            dir: PathBuf::from(dir),
            tag,
        })
    }
}

impl fmt::Display for Location {
    /// `docker://REF` for a registry (unambiguous even for a registry host named
    /// `oci`), `oci:DIR[:TAG]` for a layout. A parsed location displays as a string
    /// that parses back to it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "{REGISTRY_PREFIX}{r}"),
            Location::Layout { dir, tag } => {
                write!(f, "{LAYOUT_PREFIX}{}", dir.display())?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const D1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const D2: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> ImageReference {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    /// Every input that must parse, with its canonical and familiar forms. The
    /// round-trip tests below run over this table.
    const GOOD: &[(&str, &str, &str)] = &[
        // input, canonical (Display), familiar
        ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
        (
            "alpine:3.20",
            "docker.io/library/alpine:3.20",
            "alpine:3.20",
        ),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        (
            "docker.io/user/app:1.0",
            "docker.io/user/app:1.0",
            "user/app:1.0",
        ),
        (
            "docker.io/alpine",
            "docker.io/library/alpine:latest",
            "alpine:latest",
        ),
        (
            "index.docker.io/library/alpine",
            "docker.io/library/alpine:latest",
            "alpine:latest",
        ),
        (
            "registry-1.docker.io/user/app:v1",
            "docker.io/user/app:v1",
            "user/app:v1",
        ),
        (
            "Docker.IO/user/app",
            "docker.io/user/app:latest",
            "user/app:latest",
        ),
        // docker keeps `library/` when more components follow.
        (
            "library/a/b",
            "docker.io/library/a/b:latest",
            "library/a/b:latest",
        ),
        ("a/b/c/d", "docker.io/a/b/c/d:latest", "a/b/c/d:latest"),
        (
            "localhost:5000/a/b",
            "localhost:5000/a/b:latest",
            "localhost:5000/a/b:latest",
        ),
        ("localhost/a", "localhost/a:latest", "localhost/a:latest"),
        // docker: a one-component name is never a host, so these are Docker Hub images.
        (
            "localhost",
            "docker.io/library/localhost:latest",
            "localhost:latest",
        ),
        (
            "localhost:5000",
            "docker.io/library/localhost:5000",
            "localhost:5000",
        ),
        (
            "example.com",
            "docker.io/library/example.com:latest",
            "example.com:latest",
        ),
        // docker: with a tag, 64 hex characters are an ordinary name again.
        (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:v1",
            "docker.io/library/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:v1",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:v1",
        ),
        (
            "myhost:5000/a",
            "myhost:5000/a:latest",
            "myhost:5000/a:latest",
        ),
        (
            "Example.COM:00443/a",
            "example.com:443/a:latest",
            "example.com:443/a:latest",
        ),
        (
            "127.0.0.1:5000/a@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "127.0.0.1:5000/a@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "127.0.0.1:5000/a@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "host.example.com/a/b:tag@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "host.example.com/a/b:tag@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "host.example.com/a/b:tag@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "docker.io/library/alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        ("[::1]:5000/a", "[::1]:5000/a:latest", "[::1]:5000/a:latest"),
        ("[::1]/a", "[::1]/a:latest", "[::1]/a:latest"),
        (
            "[0:0:0:0:0:0:0:1]:5000/a",
            "[::1]:5000/a:latest",
            "[::1]:5000/a:latest",
        ),
        (
            "[2001:DB8::1]/a",
            "[2001:db8::1]/a:latest",
            "[2001:db8::1]/a:latest",
        ),
        (
            "a.b-c.d/x_y/z__w.v:V1_x-y",
            "a.b-c.d/x_y/z__w.v:V1_x-y",
            "a.b-c.d/x_y/z__w.v:V1_x-y",
        ),
        // `docker.io/` stays where dropping it would make the first component a host.
        (
            "docker.io/foo.bar/app",
            "docker.io/foo.bar/app:latest",
            "docker.io/foo.bar/app:latest",
        ),
        (
            "docker.io/localhost/app",
            "docker.io/localhost/app:latest",
            "docker.io/localhost/app:latest",
        ),
        (
            "docker.io/library/foo.bar",
            "docker.io/library/foo.bar:latest",
            "foo.bar:latest",
        ),
    ];

    #[test]
    fn good_table_parses_to_canonical_and_familiar_forms() {
        for &(input, canonical, familiar) in GOOD {
            let r = parse(input);
            assert_eq!(r.to_string(), canonical, "display of {input:?}");
            assert_eq!(r.familiar(), familiar, "familiar of {input:?}");
        }
    }

    #[test]
    fn round_trips_over_the_good_table() {
        for &(input, _, _) in GOOD {
            let r = parse(input);
            // parse → display → parse gives the same value, and display is a fixpoint.
            let again = parse(&r.to_string());
            assert_eq!(again, r, "display round trip of {input:?}");
            assert_eq!(again.to_string(), r.to_string());
            // The familiar form means the same image too.
            assert_eq!(parse(&r.familiar()), r, "familiar round trip of {input:?}");
            // So does a digest-pinned form.
            let d: Digest = D2.parse().unwrap();
            let pinned = r.with_digest(d.clone());
            assert_eq!(parse(&pinned.to_string()), pinned, "pinned {input:?}");
            assert_eq!(parse(&pinned.familiar()), pinned);
            // And the location forms.
            let loc = Location::Registry(r.clone());
            assert_eq!(loc.to_string().parse::<Location>().unwrap(), loc);
            assert_eq!(input.parse::<Location>().unwrap(), loc, "{input:?}");
        }
    }

    #[rstest]
    #[case::bare("alpine", "docker.io", "library/alpine", Some("latest"), None, true)]
    #[case::tagged(
        "alpine:latest",
        "docker.io",
        "library/alpine",
        Some("latest"),
        None,
        false
    )]
    #[case::namespaced("user/app", "docker.io", "user/app", Some("latest"), None, true)]
    #[case::hub_explicit(
        "docker.io/user/app:1.0",
        "docker.io",
        "user/app",
        Some("1.0"),
        None,
        false
    )]
    #[case::port(
        "localhost:5000/a/b",
        "localhost:5000",
        "a/b",
        Some("latest"),
        None,
        true
    )]
    #[case::ipv4_digest(
        "127.0.0.1:5000/a@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "127.0.0.1:5000",
        "a",
        None,
        Some(D1),
        false
    )]
    // docker: `:tag@digest` keeps both; the digest is what gets pulled.
    #[case::tag_and_digest(
        "host.example.com/a/b:tag@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "host.example.com",
        "a/b",
        Some("tag"),
        Some(D1),
        false
    )]
    #[case::ipv6("[::1]:5000/a", "[::1]:5000", "a", Some("latest"), None, true)]
    // docker: `localhost:5000` alone is the image `library/localhost` tagged `5000`.
    #[case::hostlike_single(
        "localhost:5000",
        "docker.io",
        "library/localhost",
        Some("5000"),
        None,
        false
    )]
    fn parts(
        #[case] input: &str,
        #[case] registry: &str,
        #[case] repo: &str,
        #[case] tag: Option<&str>,
        #[case] digest: Option<&str>,
        #[case] defaulted: bool,
    ) {
        let r = parse(input);
        assert_eq!(r.registry(), registry);
        assert_eq!(r.repository().as_str(), repo);
        assert_eq!(r.tag().map(Tag::as_str), tag);
        assert_eq!(r.digest().map(Digest::to_string).as_deref(), digest);
        assert_eq!(r.tag_defaulted(), defaulted);
        let want = match digest {
            Some(d) => Reference::Digest(d.parse().unwrap()),
            None => Reference::Tag(tag.unwrap().parse().unwrap()),
        };
        assert_eq!(r.manifest_reference(), want);
    }

    fn kind(e: &ReferenceError) -> &'static str {
        match e {
            ReferenceError::Empty => "Empty",
            ReferenceError::HexIdentifier(_) => "HexIdentifier",
            ReferenceError::MissingName(_) => "MissingName",
            ReferenceError::BadHost { .. } => "BadHost",
            ReferenceError::BadPort { .. } => "BadPort",
            ReferenceError::UppercaseName { .. } => "UppercaseName",
            ReferenceError::BadName { .. } => "BadName",
            ReferenceError::NameTooLong { .. } => "NameTooLong",
            ReferenceError::BadTag { .. } => "BadTag",
            ReferenceError::TagTooLong { .. } => "TagTooLong",
            ReferenceError::BadDigest { .. } => "BadDigest",
            ReferenceError::EmptyLayoutDir(_) => "EmptyLayoutDir",
        }
    }

    /// Good and bad inputs side by side: `Ok` gives the canonical form, `Err` the
    /// error variant.
    #[rstest]
    #[case("", Err("Empty"))]
    #[case("a", Ok("docker.io/library/a:latest"))]
    #[case(HEX, Err("HexIdentifier"))]
    #[case(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        Ok(
            "docker.io/library/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85:latest"
        )
    )]
    #[case(":v1", Err("MissingName"))]
    #[case(
        "@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        Err("MissingName")
    )]
    #[case("localhost:5000/:v1", Err("BadName"))]
    // docker: "repository name must be lowercase".
    #[case("Alpine", Err("UppercaseName"))]
    #[case("alpine:V1", Ok("docker.io/library/alpine:V1"))]
    #[case("docker.io/User/app", Err("UppercaseName"))]
    #[case("localhost:5000/A", Err("UppercaseName"))]
    // Current docker reads `User` as a registry host here; berth reports the name.
    #[case("User/app", Err("UppercaseName"))]
    #[case("EXAMPLE.com/app", Ok("example.com/app:latest"))]
    #[case("alpine:", Err("BadTag"))]
    #[case("alpine:-x", Err("BadTag"))]
    #[case("alpine:_x", Ok("docker.io/library/alpine:_x"))]
    #[case("alpine:a+b", Err("BadTag"))]
    #[case("alpine@", Err("BadDigest"))]
    #[case("alpine@sha256:abc", Err("BadDigest"))]
    #[case("alpine@md5:d41d8cd98f00b204e9800998ecf8427e", Err("BadDigest"))]
    #[case(
        "alpine@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        Err("BadDigest")
    )]
    #[case(
        "alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        Err("BadDigest")
    )]
    #[case(
        "alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:v1",
        Err("BadDigest")
    )]
    #[case("host.com/a", Ok("host.com/a:latest"))]
    #[case("-host.com/a", Err("BadHost"))]
    #[case("host-.com/a", Err("BadHost"))]
    #[case("a..b/c", Err("BadHost"))]
    #[case("example.com./a", Err("BadHost"))]
    #[case("host_x.com/a", Err("BadHost"))]
    #[case("999.1.1.1/a", Err("BadHost"))]
    #[case("127.1/a", Err("BadHost"))]
    #[case("1.2.3.4/a", Ok("1.2.3.4/a:latest"))]
    #[case("localhost:5000/a", Ok("localhost:5000/a:latest"))]
    #[case("localhost:/a", Err("BadPort"))]
    #[case("localhost:0/a", Err("BadPort"))]
    #[case("localhost:65536/a", Err("BadPort"))]
    #[case("localhost:65535/a", Ok("localhost:65535/a:latest"))]
    #[case("localhost:50a/a", Err("BadPort"))]
    #[case("localhost:+50/a", Err("BadPort"))]
    #[case("localhost:5000:6000/a", Err("BadPort"))]
    #[case("[::1]:5000/a", Ok("[::1]:5000/a:latest"))]
    // IPv6 literals need brackets.
    #[case("::1/a", Err("BadHost"))]
    #[case("[::1/a", Err("BadHost"))]
    #[case("[::g]/a", Err("BadHost"))]
    #[case("[fe80::1%eth0]:5000/a", Err("BadHost"))]
    #[case("[::1]x/a", Err("BadHost"))]
    #[case("[::1]:/a", Err("BadPort"))]
    #[case("a/b", Ok("docker.io/a/b:latest"))]
    #[case("a//b", Err("BadName"))]
    #[case("a/-b", Err("BadName"))]
    #[case("localhost/", Err("BadName"))]
    #[case("a b", Err("BadName"))]
    #[case("a:b:c", Err("BadName"))]
    #[case("a___b", Err("BadName"))]
    fn table(#[case] input: &str, #[case] want: Result<&str, &str>) {
        let got = input.parse::<ImageReference>();
        match (&got, want) {
            (Ok(r), Ok(canonical)) => {
                assert_eq!(r.to_string(), canonical, "{input:?}");
                assert_eq!(parse(canonical), *r, "round trip of {input:?}");
            }
            (Err(e), Err(k)) => {
                assert_eq!(kind(e), k, "{input:?}: {e}");
                let msg = e.to_string();
                assert!(msg.starts_with(char::is_lowercase), "{msg}");
                assert!(
                    msg.contains(&format!("{input:?}")) || input.is_empty(),
                    "{msg}"
                );
            }
            _ => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn length_limits() {
        // The repository name (after `library/` is added) may be 255 characters.
        let hub_ok = "a".repeat(MAX_NAME_LEN - OFFICIAL_PREFIX.len());
        assert!(hub_ok.parse::<ImageReference>().is_ok());
        let hub_long = format!("{hub_ok}a");
        assert_eq!(
            hub_long.parse::<ImageReference>(),
            Err(ReferenceError::NameTooLong {
                input: hub_long.clone(),
                len: MAX_NAME_LEN + 1
            })
        );
        let host_ok = format!("example.com/{}", "a".repeat(MAX_NAME_LEN));
        assert!(host_ok.parse::<ImageReference>().is_ok());
        let host_long = format!("{host_ok}a");
        assert!(matches!(
            host_long.parse::<ImageReference>(),
            Err(ReferenceError::NameTooLong { len: 256, .. })
        ));

        let tag_ok = format!("alpine:{}", "t".repeat(MAX_TAG_LEN));
        assert!(tag_ok.parse::<ImageReference>().is_ok());
        let tag_long = format!("{tag_ok}t");
        assert_eq!(
            tag_long.parse::<ImageReference>(),
            Err(ReferenceError::TagTooLong {
                input: tag_long.clone(),
                len: MAX_TAG_LEN + 1
            })
        );
        // Too long *and* malformed is reported as malformed.
        let tag_bad = format!("alpine:-{}", "t".repeat(MAX_TAG_LEN));
        assert!(matches!(
            tag_bad.parse::<ImageReference>(),
            Err(ReferenceError::BadTag { .. })
        ));

        // DNS limits: 63 per label.
        let label = format!("{}.com/a", "h".repeat(63));
        assert!(label.parse::<ImageReference>().is_ok());
        let label = format!("{}.com/a", "h".repeat(64));
        assert!(matches!(
            label.parse::<ImageReference>(),
            Err(ReferenceError::BadHost { .. })
        ));
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(
            "Alpine".parse::<ImageReference>(),
            Err(ReferenceError::UppercaseName {
                input: "Alpine".into(),
                name: "library/Alpine".into()
            })
        );
        assert_eq!(
            "localhost:99999/a".parse::<ImageReference>(),
            Err(ReferenceError::BadPort {
                input: "localhost:99999/a".into(),
                port: "99999".into()
            })
        );
        assert_eq!(
            "bad_host.io:5000/a".parse::<ImageReference>(),
            Err(ReferenceError::BadHost {
                input: "bad_host.io:5000/a".into(),
                host: "bad_host.io".into()
            })
        );
        assert_eq!(
            "a/B".parse::<ImageReference>().unwrap_err().to_string(),
            r#"image reference "a/B": repository name "a/B" must be lowercase"#
        );
        assert_eq!(
            "alpine:a+b"
                .parse::<ImageReference>()
                .unwrap_err()
                .to_string(),
            r#"image reference "alpine:a+b" has an invalid tag "a+b" (want [a-zA-Z0-9_][a-zA-Z0-9._-]*)"#
        );
        match "a/-b".parse::<ImageReference>() {
            Err(ReferenceError::BadName { input, source }) => {
                assert_eq!(input, "a/-b");
                assert_eq!(source, NameError::BadName("a/-b".into()));
            }
            other => panic!("{other:?}"),
        }
        match "alpine@md5:x".parse::<ImageReference>() {
            Err(e @ ReferenceError::BadDigest { .. }) => {
                assert_eq!(
                    e.to_string(),
                    r#"image reference "alpine@md5:x" has an invalid digest: digest algorithm "md5" is not supported (sha256 and sha512 are)"#
                );
                assert!(std::error::Error::source(&e).is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaulted_tag_does_not_affect_equality() {
        let bare = parse("alpine");
        let tagged = parse("docker.io/library/alpine:latest");
        assert!(bare.tag_defaulted());
        assert!(!tagged.tag_defaulted());
        assert_eq!(bare, tagged);
        let set: std::collections::HashSet<_> = [bare, tagged].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[rstest]
    #[case("docker.io/library/alpine", "registry-1.docker.io")]
    #[case("alpine", "registry-1.docker.io")]
    #[case("index.docker.io/a/b", "registry-1.docker.io")]
    #[case("registry-1.docker.io/a/b", "registry-1.docker.io")]
    #[case("docker.io:443/a/b", "docker.io:443")]
    #[case("ghcr.io/a/b", "ghcr.io")]
    #[case("localhost:5000/a", "localhost:5000")]
    #[case("[::1]:5000/a", "[::1]:5000")]
    fn api_host(#[case] input: &str, #[case] host: &str) {
        assert_eq!(parse(input).api_host(), host);
    }

    #[rstest]
    #[case("localhost/a", true)]
    #[case("localhost:5000/a", true)]
    #[case("LocalHost:5000/a", true)]
    #[case("127.0.0.1/a", true)]
    #[case("127.0.0.1:5000/a", true)]
    #[case("127.255.255.254:80/a", true)]
    #[case("[::1]/a", true)]
    #[case("[::1]:5000/a", true)]
    #[case("[0:0:0:0:0:0:0:1]:5000/a", true)]
    #[case("[::ffff:127.0.0.1]:5000/a", true)]
    // Names that merely start like loopback are ordinary hosts.
    #[case("127.0.0.1.evil.com/a", false)]
    #[case("127.0.0.1.nip.io:5000/a", false)]
    #[case("localhost.evil.com/a", false)]
    #[case("localhost.localdomain/a", false)]
    #[case("128.0.0.1/a", false)]
    #[case("10.0.0.1:5000/a", false)]
    #[case("0.0.0.0:5000/a", false)]
    #[case("[::]:5000/a", false)]
    #[case("[::2]/a", false)]
    #[case("[::ffff:10.0.0.1]/a", false)]
    #[case("example.com/a", false)]
    #[case("alpine", false)]
    // `localhost` alone is the Docker Hub image `library/localhost`.
    #[case("localhost", false)]
    #[case("docker.io/localhost/a", false)]
    fn plain_http(#[case] input: &str, #[case] loopback: bool) {
        let r = parse(input);
        assert_eq!(r.allows_plain_http(false), loopback, "{input:?}");
        assert!(r.allows_plain_http(true), "{input:?} with the flag");
    }

    #[test]
    fn with_digest_pins() {
        let d1: Digest = D1.parse().unwrap();
        let d2: Digest = D2.parse().unwrap();

        let tagged = parse("alpine:3.20").with_digest(d1.clone());
        assert_eq!(
            tagged.to_string(),
            format!("docker.io/library/alpine:3.20@{D1}")
        );
        assert_eq!(tagged.familiar(), format!("alpine:3.20@{D1}"));
        assert_eq!(tagged.manifest_reference(), Reference::Digest(d1.clone()));

        let bare = parse("localhost:5000/a").with_digest(d1.clone());
        assert_eq!(bare.to_string(), format!("localhost:5000/a:latest@{D1}"));
        assert!(bare.tag_defaulted());

        let digested = parse(&format!("ghcr.io/a/b@{D1}")).with_digest(d2.clone());
        assert_eq!(digested.to_string(), format!("ghcr.io/a/b@{D2}"));

        let both = parse(&format!("ghcr.io/a/b:v1@{D1}")).with_digest(d2.clone());
        assert_eq!(both.to_string(), format!("ghcr.io/a/b:v1@{D2}"));
        assert_eq!(both.digest(), Some(&d2));
    }

    #[test]
    fn new_matches_parse() {
        let alpine: RepoName = "alpine".parse().unwrap();
        let hub = ImageReference::new("docker.io", alpine.clone(), None, None).unwrap();
        assert_eq!(hub, parse("alpine"));
        assert!(hub.tag_defaulted());
        let legacy = ImageReference::new("index.docker.io", alpine.clone(), None, None).unwrap();
        assert_eq!(legacy.to_string(), "docker.io/library/alpine:latest");

        let d: Digest = D1.parse().unwrap();
        let tag: Tag = "v1".parse().unwrap();
        let r = ImageReference::new("LOCALHOST:05000", alpine.clone(), Some(tag), Some(d)).unwrap();
        assert_eq!(r.to_string(), format!("localhost:5000/alpine:v1@{D1}"));
        assert_eq!(parse(&r.to_string()), r);

        // A registry that would read as a Docker Hub namespace is refused.
        assert!(matches!(
            ImageReference::new("myhost", alpine.clone(), None, None),
            Err(ReferenceError::BadHost { .. })
        ));
        assert!(matches!(
            ImageReference::new("localhost:0", alpine, None, None),
            Err(ReferenceError::BadPort { .. })
        ));
    }

    fn layout(dir: &str, tag: Option<&str>) -> Result<Location, &'static str> {
        Ok(Location::Layout {
            dir: PathBuf::from(dir),
            tag: tag.map(str::to_owned),
        })
    }

    fn registry(s: &str) -> Result<Location, &'static str> {
        Ok(Location::Registry(parse(s)))
    }

    #[rstest]
    #[case("oci:./out", layout("./out", None))]
    #[case("oci:/tmp/x:v1", layout("/tmp/x", Some("v1")))]
    #[case("oci:out:v1.0-rc_1", layout("out", Some("v1.0-rc_1")))]
    #[case("oci:out:1.0@beta+2", layout("out", Some("1.0@beta+2")))]
    #[case("oci:out:a--b", layout("out", Some("a--b")))]
    #[case("oci:/a:b:c", layout("/a:b", Some("c")))]
    // The split is on the last `:` only when a valid ref name without `/` follows.
    #[case("oci:/tmp/a:b/c", layout("/tmp/a:b/c", None))]
    #[case("oci:/tmp/x:", layout("/tmp/x:", None))]
    #[case("oci:out:-v1", layout("out:-v1", None))]
    #[case("oci:out:a---b", layout("out:a---b", None))]
    #[case("oci:out:a..b", layout("out:a..b", None))]
    #[case("oci:out:_x", layout("out:_x", None))]
    #[case("oci:C:\\images", layout("C:\\images", None))]
    // `oci:` wins: this is a directory `5000/a`, not a registry host named `oci`.
    #[case("oci:5000/a", layout("5000/a", None))]
    #[case("oci:", Err("EmptyLayoutDir"))]
    #[case("oci::v1", Err("EmptyLayoutDir"))]
    #[case("docker://alpine", registry("alpine"))]
    #[case("docker://oci:5000/a", registry("oci:5000/a"))]
    #[case(
        "docker://docker.io/library/oci:v1",
        registry("docker.io/library/oci:v1")
    )]
    #[case("docker://", Err("Empty"))]
    #[case("docker://Alpine", Err("UppercaseName"))]
    #[case("alpine", registry("alpine"))]
    // Without `//` it is the Docker Hub image `docker`.
    #[case("docker:latest", registry("docker.io/library/docker:latest"))]
    #[case("localhost:5000/a:v1", registry("localhost:5000/a:v1"))]
    #[case("", Err("Empty"))]
    fn locations(#[case] input: &str, #[case] want: Result<Location, &'static str>) {
        let got = input.parse::<Location>();
        match (&got, &want) {
            (Ok(loc), Ok(w)) => {
                assert_eq!(loc, w, "{input:?}");
                // parse → display → parse gives the same value.
                let shown = loc.to_string();
                assert_eq!(
                    shown.parse::<Location>().as_ref(),
                    Ok(loc),
                    "{input:?} → {shown:?}"
                );
            }
            (Err(e), Err(k)) => {
                assert_eq!(kind(e), *k, "{input:?}: {e}");
                assert!(e.to_string().starts_with(char::is_lowercase));
            }
            _ => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn location_display() {
        let loc: Location = "oci:/tmp/x:v1".parse().unwrap();
        assert_eq!(loc.to_string(), "oci:/tmp/x:v1");
        let loc: Location = "alpine".parse().unwrap();
        assert_eq!(loc.to_string(), "docker://docker.io/library/alpine:latest");
        assert_eq!(
            "oci:".parse::<Location>().unwrap_err().to_string(),
            r#"layout reference "oci:" names no directory"#
        );
    }
}
