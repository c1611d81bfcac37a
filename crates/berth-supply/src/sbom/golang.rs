//! Go modules: the build information the Go toolchain (≥ 1.18) embeds in every
//! binary, as `runtime/debug.BuildInfo` and `go version -m` read it.
//!
//! The blob (the `.go.buildinfo` section, or the start of the first writable
//! segment) begins with a 32-byte header: the magic `\xff Go buildinf:`, the
//! pointer size, a flags byte, padding. With flag `0x2` set the Go version and
//! the module info follow inline as unsigned-varint-length-prefixed strings; the
//! module info is framed by 16 sentinel bytes on each side and is made of lines
//! `path`, `mod`, `dep`, `=>` (replacing the line before) and `build`, their
//! fields separated by tabs. Binaries from Go < 1.18 point to these strings
//! instead: they are not read.

use super::{DEVEL_VERSION, Ecosystem, RawPackage};

/// The build-info magic.
const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Header size; the inline strings follow it.
const HEADER: usize = 32;
/// The header is aligned to this within its blob.
const ALIGN: usize = 16;
/// How far into a segment the header is looked for (as Go itself does).
pub(super) const SEARCH_LIMIT: usize = 64 << 10;
/// Flags bit: version and module info are inline.
const FLAG_INLINE: u8 = 0x2;

/// The Go version and module info of a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BuildInfo {
    /// E.g. `go1.22.1`.
    pub go_version: String,
    /// The module info lines, sentinels removed (`""` if the binary has none).
    pub modinfo: String,
}

/// Finds and reads the build info in `data` (a section or segment's bytes).
pub(super) fn parse_buildinfo(data: &[u8]) -> Option<BuildInfo> {
    let limit = data.len().min(SEARCH_LIMIT);
    let start = (0..limit)
        .step_by(ALIGN)
        .find(|&i| data.get(i..i + MAGIC.len()) == Some(MAGIC))?;
    let header = data.get(start..start + HEADER)?;
    if header[15] & FLAG_INLINE == 0 {
        tracing::debug!("sbom: Go build info from before Go 1.18 (pointer format) is not read");
        return None;
    }
    let mut rest = &data[start + HEADER..];
    let go_version = read_string(&mut rest)?;
    let modinfo = read_string(&mut rest)?;
    // 16 sentinel bytes each side; the text ends with a newline before the trailing one.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &[][..]
    };
    Some(BuildInfo {
        go_version: String::from_utf8_lossy(go_version).into_owned(),
        modinfo: String::from_utf8_lossy(modinfo).into_owned(),
    })
}

/// A uvarint length, then that many bytes.
fn read_string<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: u64 = 0;
    let mut shift = 0;
    let mut used = 0;
    loop {
        let b = *data.get(used)?;
        used += 1;
        if shift >= 64 {
            return None;
        }
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let len = usize::try_from(len).ok()?;
    let s = data.get(used..used.checked_add(len)?)?;
    *data = &data[used + len..];
    Some(s)
}

/// The packages a binary's build info names: the main module, each dependency
/// (a `=>` replacement with a version stands for the module it replaces; one
/// to a local directory keeps the original path, version `(devel)`), and the
/// standard library as `stdlib` (version `go1.x.y`).
pub(super) fn packages(info: &BuildInfo) -> Vec<RawPackage> {
    let mut modules: Vec<(String, String)> = Vec::new();
    let mut arch = None;
    for line in info.modinfo.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod", path, rest @ ..] | ["dep", path, rest @ ..] => {
                let version = rest
                    .first()
                    .copied()
                    .filter(|v| !v.is_empty())
                    .unwrap_or(DEVEL_VERSION);
                modules.push(((*path).to_owned(), version.to_owned()));
            }
            ["=>", path, rest @ ..] => {
                // A local directory (`../dep`, `/src/dep`) has version `(devel)`
                // (Go 1.19 writes it) or none: the original path names the module.
                let local = path.starts_with('.') || path.starts_with('/');
                if let Some(last) = modules.last_mut() {
                    match rest
                        .first()
                        .filter(|v| !v.is_empty() && **v != DEVEL_VERSION)
                    {
                        Some(version) if !local => {
                            *last = ((*path).to_owned(), (*version).to_owned())
                        }
                        _ => last.1 = DEVEL_VERSION.to_owned(),
                    }
                }
            }
            ["build", setting, ..] => {
                if let Some(goarch) = setting.strip_prefix("GOARCH=") {
                    arch = Some(goarch.to_owned());
                }
            }
            _ => {}
        }
    }
    let mut out: Vec<RawPackage> = modules
        .into_iter()
        .filter(|(path, _)| !path.is_empty())
        .map(|(path, version)| RawPackage::new(Ecosystem::Go, path, version))
        .collect();
    if let Some(version) = info
        .go_version
        .split_whitespace()
        .find(|t| t.starts_with("go"))
    {
        out.push(RawPackage::new(Ecosystem::Go, "stdlib", version));
    }
    for p in &mut out {
        p.arch.clone_from(&arch);
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A Go ≥ 1.18 build-info blob, as the linker writes it.
    pub(crate) fn blob(go_version: &str, modinfo: &str) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(8); // pointer size
        out.push(FLAG_INLINE);
        out.resize(HEADER, 0);
        let mut framed = vec![0x30u8; 16];
        framed.extend_from_slice(modinfo.as_bytes());
        framed.extend_from_slice(&[0xf9u8; 16]);
        for s in [go_version.as_bytes(), &framed[..]] {
            let mut n = s.len();
            while n >= 0x80 {
                out.push((n as u8) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
            out.extend_from_slice(s);
        }
        out
    }

    pub(crate) const MODINFO: &str = "path\texample.com/app/cmd/app\nmod\texample.com/app\t(devel)\t\ndep\tgithub.com/BurntSushi/toml\tv1.3.2\th1:abc=\ndep\tgolang.org/x/sys\tv0.1.0\th1:def=\n=>\tgithub.com/fork/sys\tv0.2.0\th1:ghi=\ndep\texample.com/local\tv1.0.0\n=>\t../local\t\t\ndep\texample.com/dep\tv1.2.3\n=>\t../dep\t(devel)\t\nbuild\t-compiler=gc\nbuild\tGOARCH=arm64\nbuild\tGOOS=linux\n";

    #[test]
    fn reads_inline_build_info() {
        // Long enough for a two-byte varint length, and found at an aligned offset.
        let mut data = vec![0u8; 32];
        let modinfo = format!("{MODINFO}{}", "build\tX=y\n".repeat(20));
        data.extend(blob("go1.22.1 X:boringcrypto", &modinfo));
        let info = parse_buildinfo(&data).unwrap();
        assert_eq!(info.go_version, "go1.22.1 X:boringcrypto");
        assert_eq!(info.modinfo, modinfo);
        let got: Vec<_> = packages(&info)
            .into_iter()
            .map(|p| (p.name, p.version, p.arch.unwrap_or_default()))
            .collect();
        let want = [
            ("example.com/app", "(devel)"),
            ("github.com/BurntSushi/toml", "v1.3.2"),
            ("github.com/fork/sys", "v0.2.0"),
            ("example.com/local", "(devel)"),
            // What go 1.19 writes for `replace example.com/dep v1.2.3 => ../dep`.
            ("example.com/dep", "(devel)"),
            ("stdlib", "go1.22.1"),
        ];
        assert_eq!(got.len(), want.len());
        for ((name, version, arch), (wn, wv)) in got.iter().zip(want) {
            assert_eq!(
                (name.as_str(), version.as_str(), arch.as_str()),
                (wn, wv, "arm64")
            );
        }
    }

    #[test]
    fn rejects_truncated_and_old_formats() {
        let full = blob("go1.22.1", MODINFO);
        for cut in [10, 32, 33, 40, full.len() - 1] {
            assert!(parse_buildinfo(&full[..cut]).is_none(), "cut at {cut}");
        }
        let mut old = full.clone();
        old[15] = 0;
        assert!(parse_buildinfo(&old).is_none());
        // Unaligned magic is not a header.
        let mut shifted = vec![0u8; 3];
        shifted.extend(&full);
        assert!(parse_buildinfo(&shifted).is_none());
        // A huge varint length does not panic.
        let mut huge = full[..32].to_vec();
        huge.extend([0xff; 12]);
        assert!(parse_buildinfo(&huge).is_none());
    }
}
