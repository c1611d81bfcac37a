//! Resolving an image's `User` (`user`, `uid`, `user:group`, `uid:gid`, `uid:group`,
//! `user:gid`) to numeric ids through the rootfs's `etc/passwd` and `etc/group`.
//!
//! The rules are those of the image-spec (`config.md`, `User`: "If `group`/`gid` is not
//! specified, the default group and supplementary groups of the given `user`/`uid` in
//! `/etc/passwd` and `/etc/group` from the container are applied. If `group`/`gid` is
//! specified, supplementary groups from the container are ignored."), implemented as
//! runc, Docker and umoci do (`moby/sys/user.GetExecUser`): a numeric user is taken as a
//! uid even when a user of that name exists; a uid found in `etc/passwd` gets that entry's
//! primary group, home and supplementary groups; a uid with no entry gets gid 0 and no
//! supplementary groups; a name with no entry is an error; supplementary groups are those
//! whose member list names the user.
//!
//! The two files are read from inside the rootfs only. The image planted them, so either
//! may be a symlink aimed at a host file (`/etc/shadow`, `../../../etc/passwd`) or a
//! device node or FIFO. Each is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! relative to the rootfs directory, so every symlink (absolute or with `..`) is resolved
//! as if the rootfs were `/` and nothing outside it is ever reached. The file is first
//! opened `O_PATH` and checked to be a regular file, so no device is ever opened for
//! reading. On kernels without `openat2` (before 5.6, or where a seccomp filter refuses it)
//! each path component is opened with `O_NOFOLLOW` instead, and a symlink anywhere in the
//! path is refused.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use super::ConfigError;

/// Largest `etc/passwd` or `etc/group` read: far beyond any real one, small enough that a
/// planted huge file cannot exhaust memory.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Largest id accepted, as runc does: ids are `uid_t`, and the top half (including the
/// `(uid_t)-1` "no change" value) is refused.
const MAX_ID: u32 = i32::MAX as u32;

/// The user the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolvedUser {
    /// `process.user.uid`.
    pub uid: u32,
    /// `process.user.gid`.
    pub gid: u32,
    /// `process.user.additionalGids`, without duplicates, in `etc/group` order.
    pub additional_gids: Vec<u32>,
    /// The home directory of the matched `etc/passwd` entry, if any (for `HOME`).
    pub home: Option<String>,
}

/// One line of `etc/passwd`.
#[derive(Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One line of `etc/group`.
#[derive(Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `spec` (the image's `Config.User` or the caller's override; empty means the
/// default, uid 0) inside `rootfs`.
pub(super) fn resolve(spec: &str, rootfs: &Path) -> Result<ResolvedUser, ConfigError> {
    let user_error = |reason: String| ConfigError::User {
        user: spec.to_owned(),
        reason,
    };
    let mut parts = spec.split(':');
    let user_arg = parts.next().unwrap_or_default();
    let group_arg = parts.next();
    if parts.next().is_some() {
        return Err(user_error(
            "expected user, uid, user:group or uid:gid (more than one ':')".to_owned(),
        ));
    }
    if spec.contains(':') && user_arg.is_empty() {
        return Err(user_error("the user before ':' is empty".to_owned()));
    }
    if group_arg == Some("") {
        return Err(user_error("the group after ':' is empty".to_owned()));
    }
    let uid_arg = numeric_id(user_arg).map_err(&user_error)?;
    let gid_arg = match group_arg {
        Some(group) => numeric_id(group).map_err(&user_error)?,
        None => None,
    };

    let root = open_root(rootfs)?;
    let passwd = read_in_root(&root, rootfs, "etc/passwd")?;
    let passwd: Vec<PasswdEntry> = passwd.as_deref().map(parse_passwd).unwrap_or_default();

    let mut resolved = ResolvedUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: None,
    };
    let entry = if user_arg.is_empty() {
        // No user given: the default is uid 0, described by its passwd entry if there is one.
        passwd.iter().find(|entry| entry.uid == 0)
    } else if let Some(uid) = uid_arg {
        resolved.uid = uid;
        passwd.iter().find(|entry| entry.uid == uid)
    } else {
        let found = passwd.iter().find(|entry| entry.name == user_arg);
        if found.is_none() {
            return Err(user_error(if passwd.is_empty() {
                "no such user: the rootfs has no etc/passwd entries".to_owned()
            } else {
                format!("no user named {user_arg:?} in etc/passwd")
            }));
        }
        found
    };
    if let Some(entry) = entry {
        resolved.uid = entry.uid;
        resolved.gid = entry.gid;
        resolved.home = Some(entry.home.clone()).filter(|home| !home.is_empty());
    }

    match (group_arg, gid_arg) {
        (Some(_), Some(gid)) => resolved.gid = gid,
        (Some(group), None) => {
            let groups = read_groups(&root, rootfs)?;
            let found = groups.iter().find(|entry| entry.name == group);
            match found {
                Some(entry) => resolved.gid = entry.gid,
                None => {
                    return Err(user_error(if groups.is_empty() {
                        "no such group: the rootfs has no etc/group entries".to_owned()
                    } else {
                        format!("no group named {group:?} in etc/group")
                    }));
                }
            }
        }
        (None, _) => {
            // Supplementary groups only in the implicit form, and only for a user that has
            // a passwd entry (membership lists hold names).
            if let Some(entry) = entry {
                for group in read_groups(&root, rootfs)? {
                    if group.members.contains(&entry.name)
                        && !resolved.additional_gids.contains(&group.gid)
                    {
                        resolved.additional_gids.push(group.gid);
                    }
                }
            }
        }
    }
    Ok(resolved)
}

/// `Some(id)` when `text` is a decimal id, `None` when it is a name, an error when it is
/// decimal but out of range.
fn numeric_id(text: &str) -> Result<Option<u32>, String> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Ok(None);
    }
    match text.parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(Some(id)),
        _ => Err(format!("id {text} is out of range (0 to {MAX_ID})")),
    }
}

/// `etc/group` of the rootfs, parsed; empty when it does not exist.
fn read_groups(root: &OwnedFd, rootfs: &Path) -> Result<Vec<GroupEntry>, ConfigError> {
    Ok(read_in_root(root, rootfs, "etc/group")?
        .as_deref()
        .map(parse_group)
        .unwrap_or_default())
}

/// The entries of an `etc/passwd` file (`name:password:uid:gid:gecos:home:shell`). Blank
/// lines, `#` comments and lines whose uid or gid is not a number are skipped (a malformed
/// line must not turn into uid 0).
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let fields: Vec<&str> = line.split(':').collect();
            let (name, uid, gid) = (fields.first()?, fields.get(2)?, fields.get(3)?);
            Some(PasswdEntry {
                name: (*name).to_owned(),
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                home: fields.get(5).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// The entries of an `etc/group` file (`name:password:gid:member,member`), skipping lines
/// as [`parse_passwd`] does.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let fields: Vec<&str> = line.split(':').collect();
            let (name, gid) = (fields.first()?, fields.get(2)?);
            Some(GroupEntry {
                name: (*name).to_owned(),
                gid: gid.parse().ok()?,
                members: fields
                    .get(3)
                    .copied()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|member| !member.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// The rootfs directory, opened `O_PATH` (the path itself is trusted: it is the bundle's).
fn open_root(rootfs: &Path) -> Result<OwnedFd, ConfigError> {
    rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| ConfigError::Io {
        path: rootfs.to_owned(),
        source: errno.into(),
    })
}

/// The text of the regular file at `relative` inside the rootfs, never leaving it; `None`
/// when the file (or a directory on the way) does not exist.
fn read_in_root(
    root: &OwnedFd,
    rootfs: &Path,
    relative: &str,
) -> Result<Option<String>, ConfigError> {
    let io_error = |source: io::Error| ConfigError::Io {
        path: rootfs.join(relative),
        source,
    };
    let file = match open_regular_in_root(root, relative) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(error)),
    };
    let mut bytes = Vec::new();
    std::fs::File::from(file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(&io_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io_error(io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes; refusing to read it"
        ))));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Opens `relative` for reading, resolved inside the root, after checking (through an
/// `O_PATH` descriptor, which opens nothing) that it is a regular file.
fn open_regular_in_root(root: &OwnedFd, relative: &str) -> io::Result<OwnedFd> {
    let path_fd = match open_in_root(root, relative, OFlags::PATH) {
        Err(errno) if errno == rustix::io::Errno::NOSYS || errno == rustix::io::Errno::PERM => {
            // No openat2 here (old kernel, or a seccomp filter that refuses it).
            tracing::debug!(
                path = relative,
                "openat2 unavailable ({errno}); refusing symlinks instead"
            );
            return open_no_symlinks(root, relative);
        }
        other => other?,
    };
    let before = rustix::fs::fstat(&path_fd)?;
    if !FileType::from_raw_mode(before.st_mode).is_file() {
        return Err(io::Error::other("not a regular file; refusing to read it"));
    }
    let file = open_in_root(
        root,
        relative,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK,
    )?;
    let after = rustix::fs::fstat(&file)?;
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
        return Err(io::Error::other("changed while being opened; refusing it"));
    }
    Ok(file)
}

/// `openat2(root, relative, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
fn open_in_root(root: &OwnedFd, relative: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        root,
        relative,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// The fallback without `openat2`: every component opened with `O_NOFOLLOW`, so a symlink
/// anywhere on the path is refused, and `..` is refused too.
fn open_no_symlinks(root: &OwnedFd, relative: &str) -> io::Result<OwnedFd> {
    let components: Vec<&str> = relative
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let Some((last, directories)) = components.split_last() else {
        return Err(io::Error::other("empty path"));
    };
    let refuse_symlink = |errno: rustix::io::Errno| -> io::Error {
        if errno == rustix::io::Errno::LOOP || errno == rustix::io::Errno::NOTDIR {
            io::Error::other("is a symlink (or under one), refused because openat2 is unavailable")
        } else {
            errno.into()
        }
    };
    let mut dir: Option<OwnedFd> = None;
    for component in directories {
        if *component == ".." {
            return Err(io::Error::other("'..' refused"));
        }
        let parent = dir.as_ref().unwrap_or(root);
        let next = rustix::fs::openat(
            parent,
            *component,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(refuse_symlink)?;
        dir = Some(next);
    }
    let parent = dir.as_ref().unwrap_or(root);
    let path_fd = rustix::fs::openat(
        parent,
        *last,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let before = rustix::fs::fstat(&path_fd)?;
    let file_type = FileType::from_raw_mode(before.st_mode);
    if file_type == FileType::Symlink {
        return Err(io::Error::other(
            "is a symlink, refused because openat2 is unavailable",
        ));
    }
    if !file_type.is_file() {
        return Err(io::Error::other("not a regular file; refusing to read it"));
    }
    let file = rustix::fs::openat(
        parent,
        *last,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(refuse_symlink)?;
    let after = rustix::fs::fstat(&file)?;
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
        return Err(io::Error::other("changed while being opened; refusing it"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_lines_are_skipped_not_read_as_root() {
        let entries = parse_passwd(
            "# comment\n\nbroken:x::\nalice:x:1000:1000::/home/alice:/bin/sh\nshort:x:7\n",
        );
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "alice");
        assert_eq!(entries[0].home, "/home/alice");
        let groups = parse_group("wheel:x:10:alice, bob ,\nbad:x:nan:alice\nnomembers:x:11\n");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].members, ["alice", "bob"]);
        assert!(groups[1].members.is_empty());
    }

    #[test]
    fn ids_are_numeric_only_in_range() {
        assert_eq!(numeric_id("0"), Ok(Some(0)));
        assert_eq!(numeric_id("2147483647"), Ok(Some(MAX_ID)));
        assert!(numeric_id("2147483648").is_err());
        assert!(numeric_id("99999999999999999999").is_err());
        assert_eq!(numeric_id("-1"), Ok(None));
        assert_eq!(numeric_id("+1"), Ok(None));
        assert_eq!(numeric_id("alice"), Ok(None));
        assert_eq!(numeric_id(""), Ok(None));
    }

    #[test]
    fn the_fallback_refuses_symlinks_and_reads_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("etc", dir.path().join("etc2")).unwrap();
        let root = open_root(dir.path()).unwrap();

        let mut text = String::new();
        std::fs::File::from(open_no_symlinks(&root, "etc/group").unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "root:x:0:\n");
        for path in ["etc/passwd", "etc2/group"] {
            let error = open_no_symlinks(&root, path).unwrap_err();
            assert!(error.to_string().contains("symlink"), "{path}: {error}");
        }
        assert!(open_no_symlinks(&root, "../etc/group").is_err());
        assert_eq!(
            open_no_symlinks(&root, "etc/missing").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_fifo_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("etc/passwd"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let root = open_root(dir.path()).unwrap();
        let error = read_in_root(&root, dir.path(), "etc/passwd").unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
        let error = open_no_symlinks(&root, "etc/passwd").unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }
}
