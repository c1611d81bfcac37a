//! Debian packages: dpkg's `var/lib/dpkg/status` database, distroless's
//! one-stanza-per-file `var/lib/dpkg/status.d/*`, and licences from
//! machine-readable (DEP-5) `usr/share/doc/<pkg>/copyright` files.

use super::rfc822::{self, Stanza};
use super::{Ecosystem, RawPackage};

/// The installed packages of a dpkg status file (or a `status.d` file). A
/// stanza with a `Status:` counts only when its package state is `installed`
/// (`install ok installed`, also `hold ok installed`); distroless stanzas have
/// no `Status:` and always count.
pub(super) fn parse_status(text: &str) -> Vec<RawPackage> {
    rfc822::stanzas(text).iter().filter_map(package).collect()
}

fn package(stanza: &Stanza) -> Option<RawPackage> {
    let name = stanza.get_nonempty("Package")?;
    if let Some(status) = stanza.get("Status")
        && status.split_whitespace().nth(2) != Some("installed")
    {
        return None;
    }
    let version = stanza.get_nonempty("Version")?;
    let mut p = RawPackage::new(Ecosystem::Deb, name, version);
    p.arch = stanza.get_nonempty("Architecture").map(str::to_owned);
    p.supplier = stanza.get_nonempty("Maintainer").map(str::to_owned);
    // `Source: glibc (2.36-9)`: the source package name, kept when it differs.
    p.upstream = stanza
        .get_nonempty("Source")
        .and_then(|s| s.split_whitespace().next())
        .filter(|s| *s != name)
        .map(str::to_owned);
    Some(p)
}

/// The licences a DEP-5 copyright file declares, as its `License:` short
/// names joined with ` AND ` (a compound name is parenthesised); `None` for a
/// copyright file that is not machine-readable.
pub(super) fn copyright_licence(text: &str) -> Option<String> {
    let paragraphs = rfc822::stanzas(text);
    let header = paragraphs.first()?;
    let format = header.get("Format")?;
    if !format.contains("copyright-format") && !format.contains("dep5") {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    let declaring = paragraphs
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || p.get("Files").is_some());
    for (_, paragraph) in declaring {
        for value in paragraph.get_all("License") {
            let short = value.lines().next().unwrap_or_default().trim();
            if short.is_empty() {
                continue;
            }
            let short = if short.contains(char::is_whitespace) {
                format!("({short})")
            } else {
                short.to_owned()
            };
            if !names.contains(&short) {
                names.push(short);
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    if names.len() == 1
        && let Some(inner) = names[0].strip_prefix('(').and_then(|n| n.strip_suffix(')'))
    {
        return Some(inner.to_owned());
    }
    Some(names.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_stanzas_only() {
        let text = "\
Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc (2.36-9)
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: GNU C Library
 Contains the standard libraries.

Package: oldpkg
Status: deinstall ok config-files
Version: 1.0

Package: held
Status: hold ok installed
Version: 1:2.0-1
Architecture: all
";
        let pkgs = parse_status(text);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "libc6");
        assert_eq!(pkgs[0].version, "2.36-9+deb12u4");
        assert_eq!(pkgs[0].upstream.as_deref(), Some("glibc"));
        assert_eq!(pkgs[0].arch.as_deref(), Some("amd64"));
        assert_eq!(
            pkgs[0].supplier.as_deref(),
            Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>")
        );
        assert_eq!(pkgs[1].version, "1:2.0-1");
    }

    #[test]
    fn dep5_licences() {
        let text = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: zlib

Files: *
Copyright: 1995-2013 Jean-loup Gailly and Mark Adler
License: Zlib

Files: contrib/*
Copyright: someone
License: GPL-2+ or Artistic

License: Zlib
 This software is provided 'as-is'...
";
        assert_eq!(
            copyright_licence(text).as_deref(),
            Some("Zlib AND (GPL-2+ or Artistic)")
        );
        assert_eq!(copyright_licence("This is free software.\n"), None);
    }
}
