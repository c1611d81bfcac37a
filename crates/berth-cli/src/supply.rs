//! The supply-chain commands: `keygen`, `sign`, `verify`, `attest`,
//! `verify-attestation`, `sbom` and `tree`. Formats and cryptography live in
//! `berth-supply`; this module finds and stores the artefacts in registries
//! (cosign's tag scheme and OCI 1.1 referrers) and prints the results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_client::registry::Registry;
use berth_client::source::Source;
use berth_client::{Client, ClientError};
use berth_oci::digest::Digest;
use berth_oci::manifest::{self, Descriptor};
use berth_oci::media_type;
use berth_oci::name::{Reference, Tag};
use berth_oci::reference::{ImageReference, Location};
use berth_supply::attach::{self, Blob, LayerRef};
use berth_supply::sbom::{Cataloguer, LayerInput, SubjectInfo};
use berth_supply::{attestation, keys, signature};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use p256::ecdsa::{SigningKey, VerifyingKey};
use serde_json::{Value, json};

use crate::client::{ClientArgs, Failure, Output, Res, location, print_json, registry_ref};

/// Environment variables a key password is read from, in order.
const PASSWORD_VARS: [&str; 2] = ["BERTH_PASSWORD", "COSIGN_PASSWORD"];

/// Where signatures and attestations are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    /// cosign's tag scheme: `sha256-<hex>.sig` / `.att` in the image's repository.
    Tag,
    /// OCI 1.1 referrers: a manifest whose `subject` is the image.
    Referrers,
    /// Both.
    Both,
}

impl Scheme {
    fn tag(self) -> bool {
        matches!(self, Scheme::Tag | Scheme::Both)
    }
    fn referrers(self) -> bool {
        matches!(self, Scheme::Referrers | Scheme::Both)
    }
}

/// SBOM output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    SpdxJson,
    /// CycloneDX 1.6 JSON.
    CyclonedxJson,
}

impl SbomFormat {
    fn media_type(self) -> &'static str {
        match self {
            SbomFormat::SpdxJson => attach::SBOM_SPDX_ARTIFACT_TYPE,
            SbomFormat::CyclonedxJson => attach::SBOM_CYCLONEDX_ARTIFACT_TYPE,
        }
    }
    fn predicate(self) -> &'static str {
        match self {
            SbomFormat::SpdxJson => "spdx",
            SbomFormat::CyclonedxJson => "cyclonedx",
        }
    }
}

/// Options of `berth sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Registry reference of the image (a tag is resolved to its digest once).
    pub reference: String,
    /// Private key (cosign's encrypted PEM, or an unencrypted PKCS#8/SEC1 PEM);
    /// the password comes from BERTH_PASSWORD (or COSIGN_PASSWORD) or a prompt.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Extra claims signed with the digest (repeatable): -a key=value.
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE", value_parser = key_value)]
    pub annotations: Vec<(String, String)>,
    /// Where to store the signature.
    #[arg(long, value_enum, default_value = "both")]
    pub scheme: Scheme,
    /// For an index: sign every manifest in it too.
    #[arg(long)]
    pub recursive: bool,
}

/// Options of `berth verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Registry reference of the image.
    pub reference: String,
    /// Public key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Require this signed claim (repeatable): -a key=value.
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE", value_parser = key_value)]
    pub annotations: Vec<(String, String)>,
}

/// Options of `berth attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    /// Registry reference of the image.
    pub reference: String,
    /// The predicate: a JSON file.
    #[arg(long, value_name = "FILE")]
    pub predicate: PathBuf,
    /// Predicate type: slsaprovenance, slsaprovenance1, spdx, cyclonedx, vuln,
    /// custom, or a URI.
    #[arg(long = "type", value_name = "TYPE", default_value = "custom")]
    pub predicate_type: String,
    /// Private key, as for `sign`.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Where to store the attestation.
    #[arg(long, value_enum, default_value = "both")]
    pub scheme: Scheme,
}

/// Options of `berth verify-attestation`.
#[derive(Debug, Args)]
pub struct VerifyAttestationArgs {
    /// Registry reference of the image.
    pub reference: String,
    /// Public key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Only attestations of this predicate type (name or URI, as for `attest`).
    #[arg(long = "type", value_name = "TYPE")]
    pub predicate_type: Option<String>,
}

/// Options of `berth sbom`.
#[derive(Debug, Args)]
pub struct SbomArgs {
    /// Registry reference or oci:DIR[:TAG].
    pub reference: String,
    /// Document format.
    #[arg(long, value_enum, default_value = "spdx-json")]
    pub format: SbomFormat,
    /// For an index: this platform's image [default: the host's].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<berth_client::platform::Platform>,
    /// Write the document to FILE instead of stdout.
    #[arg(long = "output-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Store the SBOM in the registry as a referrer of the image.
    #[arg(long)]
    pub attach: bool,
    /// With --attach: also store it as an attestation signed with this key.
    #[arg(long, value_name = "FILE", requires = "attach")]
    pub key: Option<PathBuf>,
    /// Where to store the attestation (with --key).
    #[arg(long, value_enum, default_value = "both")]
    pub scheme: Scheme,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

fn supply_err(what: &str, e: berth_supply::SupplyError) -> Failure {
    Failure::Client(ClientError::Protocol(format!("{what}: {e}")))
}

fn verification_failed(m: String) -> Failure {
    Failure::Client(ClientError::Verification(m))
}

// ---------------------------------------------------------------------------
// Keys

/// The key password: BERTH_PASSWORD, COSIGN_PASSWORD, or asked on the terminal
/// (twice when `confirm`).
fn password(prompt: &str, confirm: bool) -> Res<Vec<u8>> {
    for var in PASSWORD_VARS {
        if let Ok(p) = std::env::var(var) {
            return Ok(p.into_bytes());
        }
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(usage(
            "no terminal to ask for the key password: set BERTH_PASSWORD",
        ));
    }
    let first = rpassword::prompt_password(prompt)
        .map_err(|e| usage(format!("reading the password: {e}")))?;
    if confirm {
        let again = rpassword::prompt_password("Enter password again: ")
            .map_err(|e| usage(format!("reading the password: {e}")))?;
        if again != first {
            return Err(usage("the passwords do not match"));
        }
    }
    Ok(first.into_bytes())
}

fn read_text(path: &Path, what: &str) -> Res<String> {
    std::fs::read_to_string(path).map_err(|e| usage(format!("{what} {}: {e}", path.display())))
}

fn load_private_key(path: &Path) -> Res<SigningKey> {
    let pem = read_text(path, "private key")?;
    let pw = if pem.contains("ENCRYPTED") {
        password(
            &format!("Enter password for private key {}: ", path.display()),
            false,
        )?
    } else {
        Vec::new()
    };
    keys::decrypt_private_key(&pem, &pw).map_err(|e| usage(format!("{}: {e}", path.display())))
}

fn load_public_key(path: &Path) -> Res<VerifyingKey> {
    let pem = read_text(path, "public key")?;
    keys::parse_public_key(&pem).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename) with `mode`,
/// refusing to replace an existing file unless `force`.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Res<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    if !force && path.exists() {
        return Err(usage(format!(
            "{} exists; remove it or pass --force",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let io = |e: std::io::Error| usage(format!("writing {}: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// `berth keygen`: PREFIX.key (encrypted, 0600) and PREFIX.pub.
pub fn keygen(prefix: &str, force: bool) -> Res {
    let pw = password("Enter password for private key: ", true)?;
    let key = keys::generate();
    let private = keys::encrypt_private_key(&key, &pw).map_err(|e| supply_err("keygen", e))?;
    let public = keys::public_key_pem(key.verifying_key()).map_err(|e| supply_err("keygen", e))?;
    let (kp, pp) = (
        PathBuf::from(format!("{prefix}.key")),
        PathBuf::from(format!("{prefix}.pub")),
    );
    if !force && (kp.exists() || pp.exists()) {
        return Err(usage(format!(
            "{} or {} exists; remove them or pass --force",
            kp.display(),
            pp.display()
        )));
    }
    write_new_file(&kp, private.as_bytes(), 0o600, force)?;
    write_new_file(&pp, public.as_bytes(), 0o644, force)?;
    eprintln!("Private key written to {}", kp.display());
    eprintln!("Public key written to {}", pp.display());
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding the image and storing artefacts

/// The image a command works on: its registry, repository and resolved manifest.
struct Target {
    reference: ImageReference,
    registry: Arc<Registry>,
    repo: String,
    digest: Digest,
    media_type: String,
    bytes: Bytes,
}

impl Target {
    async fn resolve(client: &Client, reference: &str) -> Res<Target> {
        let r = registry_ref(reference)?;
        let registry = client.registry(r.registry());
        let repo = r.repository().as_str().to_owned();
        let m = registry
            .get_manifest(&repo, &r.manifest_reference())
            .await?;
        Ok(Target {
            reference: r,
            registry,
            repo,
            digest: m.digest,
            media_type: m.media_type,
            bytes: m.bytes,
        })
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            artifact_type: None,
            has_urls: false,
        }
    }

    /// `registry/repository`, as cosign writes it in `docker-reference`.
    fn docker_reference(&self) -> String {
        format!("{}/{}", self.reference.registry(), self.repo)
    }

    fn source(&self) -> Source {
        Source::Registry {
            registry: self.registry.clone(),
            reference: self.reference.with_digest(self.digest.clone()),
        }
    }

    /// The manifests in this index (empty for an image manifest).
    fn children(&self) -> Res<Vec<Descriptor>> {
        if !media_type::is_index(&self.media_type) {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_slice(&self.bytes).unwrap_or(Value::Null);
        let list = v["manifests"].as_array().cloned().unwrap_or_default();
        list.iter()
            .enumerate()
            .map(|(i, d)| {
                manifest::parse_descriptor(d, &format!("manifests[{i}]")).map_err(|e| {
                    Failure::Client(ClientError::InvalidManifest {
                        what: self.reference.to_string(),
                        reason: e.to_string(),
                    })
                })
            })
            .collect()
    }
}

fn tag_ref(digest: &Digest, suffix: &str) -> Res<Reference> {
    let t: Tag = attach::tag_for(digest, suffix)
        .parse()
        .map_err(|e| usage(format!("tag for {digest}: {e}")))?;
    Ok(Reference::Tag(t))
}

/// The manifest under tag `reference`, or `None` if there is none.
async fn manifest_if_any(reg: &Registry, repo: &str, reference: &Reference) -> Res<Option<Bytes>> {
    match reg.get_manifest(repo, reference).await {
        Ok(m) => Ok(Some(m.bytes)),
        Err(ClientError::NotFound(_)) => Ok(None),
        Err(ClientError::Registry { status: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Where an artefact was stored: "tag NAME" or "referrer DIGEST".
#[derive(Debug)]
struct Stored {
    place: String,
    manifest: Digest,
}

/// Store `blob` for `subject` by the selected scheme(s): appended to the
/// `sha256-<hex>.<suffix>` manifest, and/or as a referrer of type `artifact_type`.
async fn store(
    reg: &Registry,
    repo: &str,
    subject: &Descriptor,
    blob: &Blob,
    suffix: &str,
    artifact_type: &str,
    scheme: Scheme,
) -> Res<Vec<Stored>> {
    let mut out = Vec::new();
    if scheme.tag() {
        let reference = tag_ref(&subject.digest, suffix)?;
        let existing = manifest_if_any(reg, repo, &reference).await?;
        let built = attach::tag_scheme_manifest(existing.as_deref(), blob)
            .map_err(|e| supply_err("building the signature manifest", e))?;
        reg.put_small_blob(repo, Bytes::from(built.config.bytes.clone()))
            .await?;
        reg.put_small_blob(repo, Bytes::from(blob.bytes.clone()))
            .await?;
        reg.put_manifest(
            repo,
            &reference,
            built.media_type,
            Bytes::from(built.manifest),
        )
        .await?;
        out.push(Stored {
            place: format!("tag {reference}"),
            manifest: built.digest,
        });
    }
    if scheme.referrers() {
        let built = attach::referrer_manifest(artifact_type, subject, blob, &BTreeMap::new())
            .map_err(|e| supply_err("building the referrer manifest", e))?;
        reg.put_small_blob(repo, Bytes::from(built.config.bytes.clone()))
            .await?;
        reg.put_small_blob(repo, Bytes::from(blob.bytes.clone()))
            .await?;
        let size = built.manifest.len();
        reg.put_manifest(
            repo,
            &Reference::Digest(built.digest.clone()),
            built.media_type,
            Bytes::from(built.manifest),
        )
        .await?;
        if !reg.supports_referrers(repo, &subject.digest).await? {
            // distribution-spec "Pushing Manifests with Subject": without the API,
            // the client keeps the referrers tag schema's index up to date.
            add_to_fallback_index(
                reg,
                repo,
                &subject.digest,
                json!({"mediaType": built.media_type, "digest": built.digest.to_string(),
                       "size": size, "artifactType": artifact_type}),
            )
            .await?;
        }
        out.push(Stored {
            place: format!("referrer {}", built.digest),
            manifest: built.digest,
        });
    }
    Ok(out)
}

/// Add `entry` to the index at tag `<alg>-<hex>` (the referrers tag schema).
async fn add_to_fallback_index(reg: &Registry, repo: &str, subject: &Digest, entry: Value) -> Res {
    let t: Tag = format!("{}-{}", subject.algorithm().as_str(), subject.hex())
        .parse()
        .map_err(|e| usage(format!("referrers tag for {subject}: {e}")))?;
    let reference = Reference::Tag(t);
    let mut index = match manifest_if_any(reg, repo, &reference).await? {
        Some(b) => serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null),
        None => Value::Null,
    };
    if !index["manifests"].is_array() {
        index = json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []});
    }
    if let Some(list) = index["manifests"].as_array_mut() {
        if list.iter().any(|m| m["digest"] == entry["digest"]) {
            return Ok(());
        }
        list.push(entry);
    }
    let bytes = Bytes::from(serde_json::to_vec(&index).unwrap_or_default());
    reg.put_manifest(repo, &reference, media_type::OCI_INDEX, bytes)
        .await?;
    Ok(())
}

/// A layer found attached to an image, and where it was found.
struct Found {
    places: Vec<String>,
    layer: LayerRef,
}

/// Every layer of `layer_media_type` attached to `digest` by the tag scheme
/// (`suffix`) or as a referrer of `artifact_type`, the same layer found both
/// ways listed once.
async fn find_attached(
    reg: &Registry,
    repo: &str,
    digest: &Digest,
    suffix: &str,
    artifact_type: &str,
    layer_media_type: &str,
) -> Res<Vec<Found>> {
    let mut found: Vec<Found> = Vec::new();
    let mut add = |place: String, layers: Vec<LayerRef>| {
        for l in layers
            .into_iter()
            .filter(|l| l.media_type == layer_media_type)
        {
            match found.iter_mut().find(|f| f.layer.digest == l.digest) {
                Some(f) => f.places.push(place.clone()),
                None => found.push(Found {
                    places: vec![place.clone()],
                    layer: l,
                }),
            }
        }
    };
    let reference = tag_ref(digest, suffix)?;
    if let Some(bytes) = manifest_if_any(reg, repo, &reference).await? {
        let layers =
            attach::layers_of(&bytes).map_err(|e| supply_err(&reference.to_string(), e))?;
        add(format!("tag {reference}"), layers);
    }
    for r in reg.referrers(repo, digest, Some(artifact_type)).await? {
        let Some(d) = r["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()) else {
            continue;
        };
        let m = reg
            .get_manifest(repo, &Reference::Digest(d.clone()))
            .await?;
        let layers = attach::layers_of(&m.bytes).map_err(|e| supply_err(&d.to_string(), e))?;
        add(format!("referrer {d}"), layers);
    }
    Ok(found)
}

fn layer_descriptor(l: &LayerRef) -> Descriptor {
    Descriptor {
        media_type: l.media_type.clone(),
        digest: l.digest.clone(),
        size: l.size,
        artifact_type: None,
        has_urls: false,
    }
}

// ---------------------------------------------------------------------------
// sign / verify

/// `berth sign`.
pub async fn sign(client: Client, a: &SignArgs, args: &ClientArgs) -> Res {
    let key = load_private_key(&a.key)?;
    let target = Target::resolve(&client, &a.reference).await?;
    let annotations: BTreeMap<String, String> = a.annotations.iter().cloned().collect();
    let mut subjects = vec![target.descriptor()];
    if a.recursive {
        subjects.extend(target.children()?);
    }
    let mut report = Vec::new();
    for subject in &subjects {
        let payload = signature::payload(&target.docker_reference(), &subject.digest, &annotations);
        let sig = signature::sign(&key, &payload);
        let blob = Blob::signature(payload, &sig);
        let stored = store(
            &target.registry,
            &target.repo,
            subject,
            &blob,
            attach::SIGNATURE_TAG_SUFFIX,
            attach::SIGNATURE_ARTIFACT_TYPE,
            a.scheme,
        )
        .await?;
        report.push((subject.digest.clone(), stored));
    }
    print_stored("signed", &target, &report, args.output);
    Ok(())
}

fn print_stored(verb: &str, target: &Target, report: &[(Digest, Vec<Stored>)], out: Output) {
    if out == Output::Json {
        let list: Vec<Value> = report
            .iter()
            .map(|(d, s)| {
                json!({"digest": d.to_string(), "stored": s.iter().map(|x| json!({
                    "place": x.place, "manifest": x.manifest.to_string()})).collect::<Vec<_>>()})
            })
            .collect();
        print_json(&json!({"reference": target.reference.to_string(), verb: list}));
        return;
    }
    for (d, s) in report {
        for x in s {
            println!(
                "{verb} {}@{d}: {} ({})",
                target.docker_reference(),
                x.place,
                x.manifest
            );
        }
    }
}

/// `berth verify`: exit 0 only when at least one signature verifies with the key
/// and names the image's digest (and the required annotations).
pub async fn verify(client: Client, a: &VerifyArgs, args: &ClientArgs) -> Res {
    let key = load_public_key(&a.key)?;
    let target = Target::resolve(&client, &a.reference).await?;
    let required: BTreeMap<String, String> = a.annotations.iter().cloned().collect();
    let found = find_attached(
        &target.registry,
        &target.repo,
        &target.digest,
        attach::SIGNATURE_TAG_SUFFIX,
        attach::SIGNATURE_ARTIFACT_TYPE,
        attach::SIMPLE_SIGNING_MEDIA_TYPE,
    )
    .await?;
    if found.is_empty() {
        return Err(verification_failed(format!(
            "no signatures found for {}@{} (looked for tag {} and referrers of type {})",
            target.docker_reference(),
            target.digest,
            attach::tag_for(&target.digest, attach::SIGNATURE_TAG_SUFFIX),
            attach::SIGNATURE_ARTIFACT_TYPE
        )));
    }
    let source = target.source();
    let mut verified = Vec::new();
    let mut problems = Vec::new();
    for f in &found {
        let places = f.places.join(", ");
        let Some(sig) = f.layer.annotations.get(attach::SIGNATURE_ANNOTATION) else {
            problems.push(format!(
                "{places}: layer {} has no {} annotation",
                f.layer.digest,
                attach::SIGNATURE_ANNOTATION
            ));
            continue;
        };
        let payload = source
            .small_blob(&layer_descriptor(&f.layer), client.retry_policy())
            .await?;
        let checked = signature::verify(&key, &payload, sig)
            .and_then(|()| signature::parse_payload(&payload))
            .and_then(|c| signature::check_claims(&c, &target.digest, &required).map(|()| c));
        match checked {
            Ok(claims) => verified.push((places, claims)),
            Err(e) => problems.push(format!("{places}: {e}")),
        }
    }
    for p in &problems {
        eprintln!("berth verify: signature in {p}");
    }
    if verified.is_empty() {
        return Err(verification_failed(format!(
            "no valid signature for {}@{} with key {} ({} found, none verified)",
            target.docker_reference(),
            target.digest,
            a.key.display(),
            found.len()
        )));
    }
    if args.output == Output::Json {
        let list: Vec<Value> = verified
            .iter()
            .map(|(p, c)| json!({"found": p, "claims": c}))
            .collect();
        print_json(
            &json!({"reference": a.reference, "digest": target.digest.to_string(), "verified": list}),
        );
    } else {
        for (p, c) in &verified {
            println!(
                "Verified: {}@{} signed by {} ({p})",
                c.docker_reference,
                c.manifest_digest,
                a.key.display()
            );
            for (k, v) in &c.annotations {
                println!(
                    "  {k}: {}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// attest / verify-attestation

fn read_json(path: &Path, what: &str) -> Res<Value> {
    let text = read_text(path, what)?;
    serde_json::from_str(&text)
        .map_err(|e| usage(format!("{what} {}: not JSON: {e}", path.display())))
}

/// Sign `predicate` about `subject` and store it as an attestation.
async fn attest_value(
    target: &Target,
    subject: &Descriptor,
    key: &SigningKey,
    predicate_type: &str,
    predicate: Value,
    scheme: Scheme,
) -> Res<Vec<Stored>> {
    let uri = attestation::predicate_type_uri(predicate_type).map_err(|e| usage(e.to_string()))?;
    let statement =
        attestation::statement(&target.docker_reference(), &subject.digest, &uri, predicate);
    let bytes = serde_json::to_vec(&statement).unwrap_or_default();
    let envelope = attestation::sign_envelope(key, &bytes);
    let env_bytes = serde_json::to_vec(&envelope).unwrap_or_default();
    let blob = Blob::attestation(env_bytes, &uri);
    store(
        &target.registry,
        &target.repo,
        subject,
        &blob,
        attach::ATTESTATION_TAG_SUFFIX,
        attach::ATTESTATION_ARTIFACT_TYPE,
        scheme,
    )
    .await
}

/// `berth attest`.
pub async fn attest(client: Client, a: &AttestArgs, args: &ClientArgs) -> Res {
    let predicate = read_json(&a.predicate, "predicate")?;
    attestation::predicate_type_uri(&a.predicate_type).map_err(|e| usage(e.to_string()))?;
    let key = load_private_key(&a.key)?;
    let target = Target::resolve(&client, &a.reference).await?;
    let subject = target.descriptor();
    let stored = attest_value(
        &target,
        &subject,
        &key,
        &a.predicate_type,
        predicate,
        a.scheme,
    )
    .await?;
    print_stored(
        "attested",
        &target,
        &[(subject.digest, stored)],
        args.output,
    );
    Ok(())
}

/// `berth verify-attestation`: print each verified statement's predicate.
pub async fn verify_attestation(
    client: Client,
    a: &VerifyAttestationArgs,
    args: &ClientArgs,
) -> Res {
    let key = load_public_key(&a.key)?;
    let wanted = match &a.predicate_type {
        Some(t) => Some(attestation::predicate_type_uri(t).map_err(|e| usage(e.to_string()))?),
        None => None,
    };
    let target = Target::resolve(&client, &a.reference).await?;
    let found = find_attached(
        &target.registry,
        &target.repo,
        &target.digest,
        attach::ATTESTATION_TAG_SUFFIX,
        attach::ATTESTATION_ARTIFACT_TYPE,
        attach::DSSE_MEDIA_TYPE,
    )
    .await?;
    let source = target.source();
    let mut verified = Vec::new();
    let mut problems = Vec::new();
    for f in &found {
        let places = f.places.join(", ");
        if let (Some(w), Some(t)) = (
            &wanted,
            f.layer.annotations.get(attach::PREDICATE_TYPE_ANNOTATION),
        ) && w != t
        {
            continue;
        }
        let bytes = source
            .small_blob(&layer_descriptor(&f.layer), client.retry_policy())
            .await?;
        let checked = serde_json::from_slice::<attestation::Envelope>(&bytes)
            .map_err(|e| berth_supply::SupplyError::Format(format!("DSSE envelope: {e}")))
            .and_then(|env| attestation::verify_envelope(&key, &env))
            .and_then(|stmt| {
                attestation::check_statement(&stmt, &target.digest, wanted.as_deref())
                    .map(|()| stmt)
            });
        match checked {
            Ok(stmt) => verified.push((places, stmt)),
            Err(e) => problems.push(format!("{places}: {e}")),
        }
    }
    for p in &problems {
        eprintln!("berth verify-attestation: attestation in {p}");
    }
    if verified.is_empty() {
        let kind = wanted.map_or_else(String::new, |w| format!(" of type {w}"));
        return Err(verification_failed(format!(
            "no valid attestation{kind} for {}@{} with key {} ({} found)",
            target.docker_reference(),
            target.digest,
            a.key.display(),
            found.len()
        )));
    }
    if args.output == Output::Json {
        let list: Vec<Value> = verified
            .iter()
            .map(|(p, s)| json!({"found": p, "predicateType": s["predicateType"], "predicate": s["predicate"], "statement": s}))
            .collect();
        print_json(
            &json!({"reference": a.reference, "digest": target.digest.to_string(), "verified": list}),
        );
    } else {
        for (p, s) in &verified {
            println!(
                "Verified attestation {} for {}@{} ({p})",
                s["predicateType"].as_str().unwrap_or("?"),
                target.docker_reference(),
                target.digest
            );
            print_json(&s["predicate"]);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// sbom

/// Catalogue the image `desc` points at in `source`: every layer streamed in
/// order through the cataloguer on a blocking thread, each verified by digest
/// (a layer that does not match fails the whole SBOM).
async fn catalogue(
    source: &Source,
    image: &Bytes,
    retry: berth_client::retry::RetryPolicy,
    what: &str,
) -> Res<berth_supply::sbom::Catalog> {
    let v: Value = serde_json::from_slice(image).unwrap_or(Value::Null);
    let layers = v["layers"].as_array().cloned().unwrap_or_default();
    let mut cat = Cataloguer::new();
    for (i, l) in layers.iter().enumerate() {
        let desc = manifest::parse_descriptor(l, &format!("layers[{i}]")).map_err(|e| {
            Failure::Client(ClientError::InvalidManifest {
                what: what.to_owned(),
                reason: e.to_string(),
            })
        })?;
        let digest = desc.digest.clone();
        let media_type = desc.media_type.clone();
        let (back, result) = crate::stream::stream_blob(
            source,
            &desc,
            retry,
            &format!("layer {i} of {what}"),
            move |reader| {
                let r = cat.add_layer(LayerInput {
                    digest,
                    media_type,
                    reader,
                });
                (cat, r)
            },
        )
        .await?;
        cat = back;
        result.map_err(|e| supply_err(what, e.into()))?;
    }
    Ok(cat.finish())
}

/// `berth sbom`.
pub async fn sbom(client: Client, a: &SbomArgs, args: &ClientArgs) -> Res {
    let loc = location(&a.reference)?;
    if a.attach && !matches!(loc, Location::Registry(_)) {
        return Err(usage("--attach needs a registry reference"));
    }
    let key = match &a.key {
        Some(k) => Some(load_private_key(k)?),
        None => None,
    };
    let source = Source::open(&client, &loc)?;
    let m = crate::image::platform_manifest(&source, a.platform.as_ref(), &a.reference).await?;
    let catalog = catalogue(&source, &m.bytes, client.retry_policy(), &a.reference).await?;
    let subject = SubjectInfo {
        name: source.describe(),
        digest: m.digest.clone(),
    };
    let now = time::OffsetDateTime::now_utc();
    let doc = match a.format {
        SbomFormat::SpdxJson => berth_supply::sbom::to_spdx(&catalog, &subject, now),
        SbomFormat::CyclonedxJson => berth_supply::sbom::to_cyclonedx(&catalog, &subject, now),
    };
    let mut text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    text.push(b'\n');
    match &a.output_file {
        Some(p) => write_new_file(p, &text, 0o644, true)?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&text)
                .and_then(|()| out.flush())
                .map_err(|e| usage(format!("writing to stdout: {e}")))?;
        }
    }
    eprintln!(
        "berth sbom: {} packages in {}@{}",
        catalog.packages.len(),
        subject.name,
        subject.digest
    );
    if a.attach {
        let Source::Registry {
            registry,
            reference,
        } = &source
        else {
            return Err(usage("--attach needs a registry reference"));
        };
        let target = Target {
            reference: reference.clone(),
            registry: registry.clone(),
            repo: reference.repository().as_str().to_owned(),
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            bytes: m.bytes.clone(),
        };
        let subject_desc = target.descriptor();
        let mt = a.format.media_type();
        let blob = Blob::new(mt, text);
        let mut stored = store(
            &target.registry,
            &target.repo,
            &subject_desc,
            &blob,
            attach::SBOM_TAG_SUFFIX,
            mt,
            Scheme::Referrers,
        )
        .await?;
        if let Some(key) = &key {
            stored.extend(
                attest_value(
                    &target,
                    &subject_desc,
                    key,
                    a.format.predicate(),
                    doc,
                    a.scheme,
                )
                .await?,
            );
        }
        if args.output == Output::Json {
            print_stored(
                "attached",
                &target,
                &[(m.digest.clone(), stored)],
                Output::Json,
            );
        } else {
            for s in stored {
                eprintln!("berth sbom: stored as {} ({})", s.place, s.manifest);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// tree

/// `berth tree`: the image and everything attached to it, by either scheme.
pub async fn tree(client: Client, reference: &str, args: &ClientArgs) -> Res {
    let target = Target::resolve(&client, reference).await?;
    let reg = &target.registry;
    let repo = &target.repo;
    let mut tags = Vec::new();
    for (suffix, kind) in [
        (attach::SIGNATURE_TAG_SUFFIX, "signatures"),
        (attach::ATTESTATION_TAG_SUFFIX, "attestations"),
        (attach::SBOM_TAG_SUFFIX, "sboms"),
    ] {
        let r = tag_ref(&target.digest, suffix)?;
        if let Some(bytes) = manifest_if_any(reg, repo, &r).await? {
            let layers = attach::layers_of(&bytes).map_err(|e| supply_err(&r.to_string(), e))?;
            tags.push(json!({
                "kind": kind, "tag": r.to_string(), "digest": Digest::sha256_of(&bytes).to_string(),
                "layers": layers.iter().map(layer_json).collect::<Vec<_>>(),
            }));
        }
    }
    let mut referrers = Vec::new();
    for r in reg.referrers(repo, &target.digest, None).await? {
        let Some(d) = r["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()) else {
            continue;
        };
        let layers = match reg.get_manifest(repo, &Reference::Digest(d.clone())).await {
            Ok(m) if !media_type::is_index(&m.media_type) => attach::layers_of(&m.bytes)
                .map(|l| l.iter().map(layer_json).collect::<Vec<_>>())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        referrers.push(json!({
            "digest": d.to_string(), "artifactType": r["artifactType"], "layers": layers,
        }));
    }
    if args.output == Output::Json {
        print_json(&json!({
            "reference": reference, "digest": target.digest.to_string(),
            "mediaType": target.media_type, "tags": tags, "referrers": referrers,
        }));
        return Ok(());
    }
    println!("{}@{}", target.docker_reference(), target.digest);
    let total = tags.len() + referrers.len();
    if total == 0 {
        println!("└── (nothing attached)");
    }
    let mut n = 0;
    let mut branch = |title: String, layers: &[Value]| {
        n += 1;
        let last = n == total;
        println!("{} {title}", if last { "└──" } else { "├──" });
        let pad = if last { "    " } else { "│   " };
        for (j, l) in layers.iter().enumerate() {
            let corner = if j + 1 == layers.len() {
                "└──"
            } else {
                "├──"
            };
            let mut line = format!(
                "{} {}",
                l["mediaType"].as_str().unwrap_or("?"),
                l["digest"].as_str().unwrap_or("?")
            );
            if let Some(p) = l["annotations"][attach::PREDICATE_TYPE_ANNOTATION].as_str() {
                line.push_str(&format!(" (predicateType {p})"));
            }
            println!("{pad}{corner} {line}");
        }
    };
    for t in &tags {
        branch(
            format!(
                "{} (tag {}, {})",
                t["kind"].as_str().unwrap_or("?"),
                t["tag"].as_str().unwrap_or("?"),
                t["digest"].as_str().unwrap_or("?")
            ),
            t["layers"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
    }
    for r in &referrers {
        branch(
            format!(
                "referrer {} ({})",
                r["digest"].as_str().unwrap_or("?"),
                r["artifactType"].as_str().unwrap_or("no artifactType")
            ),
            r["layers"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
    }
    Ok(())
}

fn layer_json(l: &LayerRef) -> Value {
    json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size, "annotations": l.annotations})
}
