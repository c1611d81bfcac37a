//! ELF binaries: finding the sections that carry embedded dependency lists
//! (cargo-auditable's `.dep-v0`, Go's `.go.buildinfo`) with `object`.

use object::{Object, ObjectSection, ObjectSegment, SegmentFlags};

use super::{RawPackage, cargo, golang};

/// The packages embedded in an ELF binary (the whole file in memory); none
/// for a binary without build information or one that does not parse.
pub(super) fn catalogue(data: &[u8], path: &str) -> Vec<RawPackage> {
    let file = match object::File::parse(data) {
        Ok(file) => file,
        Err(e) => {
            tracing::debug!(path, error = %e, "sbom: an ELF file that does not parse");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    if let Some(section) = file.section_by_name(".dep-v0")
        && let Ok(bytes) = section.data()
    {
        out.extend(cargo::parse_auditable(bytes, path));
    }
    let go = match file.section_by_name(".go.buildinfo") {
        Some(section) => section.data().ok().and_then(golang::parse_buildinfo),
        // No section headers (stripped): Go looks at the first writable, not
        // executable, loadable segment.
        None => file
            .segments()
            .find(|s| matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & (object::elf::PF_W | object::elf::PF_X) == object::elf::PF_W))
            .and_then(|s| s.data().ok())
            .and_then(|d| golang::parse_buildinfo(&d[..d.len().min(golang::SEARCH_LIMIT)])),
    };
    if let Some(info) = go {
        out.extend(golang::packages(&info));
    }
    out
}
