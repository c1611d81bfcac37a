//! Parse a request path into a typed [`Endpoint`] before any handler runs.
//!
//! Repository names contain slashes, so routes cannot be matched by pattern; the
//! path is read from its end instead (`…/manifests/<ref>`, `…/blobs/uploads/<id>`,
//! `…/tags/list`), and everything before the marker is the name. Each part is
//! validated here, so handlers only ever see valid [`RepoName`]s, [`Digest`]s,
//! [`Reference`]s and [`UploadId`]s.

use axum::http::Method;
use berth_oci::{Digest, ErrorCode, Reference, RepoName};
use berth_registry::UploadId;

use crate::error::ApiError;

/// A distribution-spec endpoint, with its path parameters parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/` (end-1).
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list` (end-8).
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>` (end-3, end-7, end-9).
    Manifest(RepoName, Reference),
    /// `/v2/<name>/blobs/<digest>` (end-2, end-10).
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/` (end-4, end-11).
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>` (end-5, end-6, end-13).
    Upload(RepoName, UploadId),
    /// `/v2/<name>/referrers/<digest>` (end-12).
    Referrers(RepoName, Digest),
}

fn name(segments: &[&str]) -> Result<RepoName, ApiError> {
    let joined = segments.join("/");
    joined
        .parse()
        .map_err(|e: berth_oci::NameError| ApiError::new(ErrorCode::NameInvalid, e.to_string()))
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: berth_oci::DigestError| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
}

impl Endpoint {
    /// Parse a request path (no query string) for `method`. `None` when the path is
    /// not an endpoint of the API at all.
    ///
    /// A `<reference>` that is neither a tag nor a digest cannot name a manifest: a
    /// `PUT` to it is `MANIFEST_INVALID` (400); any other method finds nothing there,
    /// `MANIFEST_UNKNOWN` (404), as spec § Pulling manifests requires for content
    /// that is not in the repository.
    pub fn parse(method: &Method, path: &str) -> Option<Result<Endpoint, ApiError>> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Ok(Endpoint::Base));
        }
        let rest = rest.strip_prefix('/')?;
        if rest == "_catalog" {
            return Some(Ok(Endpoint::Catalog));
        }
        // `/blobs/uploads/` ends in a slash; every other endpoint must not.
        if let Some(n) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            let segs: Vec<&str> = n.split('/').collect();
            return Some(name(&segs).map(Endpoint::UploadStart));
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let len = segs.len();
        if len < 3 {
            return None;
        }
        let (last, marker) = (segs[len - 1], segs[len - 2]);
        Some(match marker {
            "tags" if last == "list" => name(&segs[..len - 2]).map(Endpoint::Tags),
            "manifests" => name(&segs[..len - 2]).and_then(|n| {
                let r = last.parse::<Reference>().map_err(|e| match e {
                    berth_oci::NameError::BadDigest(d) => {
                        ApiError::new(ErrorCode::DigestInvalid, d.to_string())
                    }
                    other if method == Method::PUT => {
                        ApiError::new(ErrorCode::ManifestInvalid, other.to_string())
                    }
                    other => ApiError::new(ErrorCode::ManifestUnknown, other.to_string()),
                })?;
                Ok(Endpoint::Manifest(n, r))
            }),
            "referrers" => {
                name(&segs[..len - 2]).and_then(|n| Ok(Endpoint::Referrers(n, digest(last)?)))
            }
            "uploads" if len >= 4 && segs[len - 3] == "blobs" => {
                name(&segs[..len - 3]).and_then(|n| {
                    let id = last.parse::<UploadId>().map_err(|_| {
                        ApiError::new(
                            ErrorCode::BlobUploadUnknown,
                            format!("upload {last:?} is not known"),
                        )
                    })?;
                    Ok(Endpoint::Upload(n, id))
                })
            }
            "blobs" => name(&segs[..len - 2]).and_then(|n| Ok(Endpoint::Blob(n, digest(last)?))),
            _ => return None,
        })
    }

    /// The operation name used in logs.
    pub fn operation(&self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Tags(_) => "tags",
            Endpoint::Manifest(..) => "manifest",
            Endpoint::Blob(..) => "blob",
            Endpoint::UploadStart(_) => "upload_start",
            Endpoint::Upload(..) => "upload",
            Endpoint::Referrers(..) => "referrers",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn ok(path: &str) -> Endpoint {
        Endpoint::parse(&Method::GET, path).unwrap().unwrap()
    }

    fn err(path: &str) -> ErrorCode {
        Endpoint::parse(&Method::GET, path)
            .unwrap()
            .unwrap_err()
            .code
            .unwrap()
    }

    #[test]
    fn base_and_catalog() {
        assert_eq!(ok("/v2/"), Endpoint::Base);
        assert_eq!(ok("/v2"), Endpoint::Base);
        assert_eq!(ok("/v2/_catalog"), Endpoint::Catalog);
    }

    #[test]
    fn names_with_slashes_and_marker_words() {
        assert_eq!(
            ok("/v2/a/blobs/b/manifests/latest"),
            Endpoint::Manifest("a/blobs/b".parse().unwrap(), "latest".parse().unwrap())
        );
        assert_eq!(
            ok("/v2/tags/list/tags/list"),
            Endpoint::Tags("tags/list".parse().unwrap())
        );
        assert_eq!(
            ok(&format!("/v2/x/uploads/blobs/{D}")),
            Endpoint::Blob("x/uploads".parse().unwrap(), D.parse().unwrap())
        );
        assert_eq!(
            ok("/v2/a/b/blobs/uploads/"),
            Endpoint::UploadStart("a/b".parse().unwrap())
        );
        let id = UploadId::new();
        assert_eq!(
            ok(&format!("/v2/a/blobs/uploads/{id}")),
            Endpoint::Upload("a".parse().unwrap(), id)
        );
        assert_eq!(
            ok(&format!("/v2/a/referrers/{D}")),
            Endpoint::Referrers("a".parse().unwrap(), D.parse().unwrap())
        );
    }

    #[rstest]
    #[case("/v2/UPPER/tags/list", ErrorCode::NameInvalid)]
    #[case("/v2/a//b/tags/list", ErrorCode::NameInvalid)]
    #[case("/v2/a/blobs/sha256:abc", ErrorCode::DigestInvalid)]
    #[case("/v2/a/manifests/sha256:abc", ErrorCode::DigestInvalid)]
    #[case("/v2/a/manifests/-bad", ErrorCode::ManifestUnknown)]
    #[case("/v2/a/blobs/uploads/..%2f..%2fetc", ErrorCode::BlobUploadUnknown)]
    #[case("/v2/a/blobs/uploads/not-a-uuid", ErrorCode::BlobUploadUnknown)]
    #[case("/v2/a/referrers/nope", ErrorCode::DigestInvalid)]
    fn invalid_parts(#[case] path: &str, #[case] code: ErrorCode) {
        assert_eq!(err(path), code, "{path}");
    }

    #[rstest]
    #[case("/v1/")]
    #[case("/v2/a")]
    #[case("/v2/a/b")]
    #[case("/v2/a/other/x")]
    #[case("/")]
    fn not_endpoints(#[case] path: &str) {
        assert!(Endpoint::parse(&Method::GET, path).is_none(), "{path}");
    }

    #[test]
    fn malformed_tag_is_invalid_only_on_put() {
        let put = Endpoint::parse(&Method::PUT, "/v2/a/manifests/.bad").unwrap();
        assert_eq!(put.unwrap_err().code, Some(ErrorCode::ManifestInvalid));
        for m in [Method::GET, Method::HEAD, Method::DELETE] {
            let e = Endpoint::parse(&m, "/v2/a/manifests/.bad")
                .unwrap()
                .unwrap_err();
            assert_eq!(e.code, Some(ErrorCode::ManifestUnknown), "{m}");
            assert_eq!(e.status, axum::http::StatusCode::NOT_FOUND);
        }
    }
}
