# shellcheck shell=bash
# From image to container (issue 9): berth unpack and berth run against images built
# here, compared with umoci unpack (the established tool), run with Debian's runc.
# Contracts: image-spec layer.md (changesets, whiteouts) and conversion.md, runtime-spec
# bundle.md and config.md; `berth run` exits with the container's exit code.

# run_out OUT ERR CMD...: berth with stdout/stderr into files (copied to the log);
# returns berth's exit status.
run_out() {
  local out=$1 err=$2 rc
  shift 2
  echo "+ $BERTH $*" >&2
  timeout --kill-after=10 "$CMD_TIMEOUT" "$BERTH" "$@" >"$out" 2>"$err" </dev/null
  rc=$?
  sed 's/^/  stdout: /' "$out" | head -n 30 >&2
  sed 's/^/  stderr: /' "$err" | head -n 30 >&2
  echo "  exit status $rc" >&2
  return "$rc"
}

# tree_listing ROOT: one line per path under ROOT: path, type, mode, uid, gid, size,
# sha256 (regular files), link target (symlinks); hard-linked files share an inode
# group number (the first path of the group).
tree_listing() {
  python3 - "$1" <<'EOF'
import hashlib, os, stat, sys
root = sys.argv[1]
groups = {}
out = []
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(dirnames + filenames):
        p = os.path.join(dirpath, name)
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        kind = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "link",
                stat.S_IFIFO: "fifo", stat.S_IFCHR: "chr", stat.S_IFBLK: "blk"}.get(stat.S_IFMT(st.st_mode), "other")
        extra = ""
        if kind == "file":
            extra = hashlib.sha256(open(p, "rb").read()).hexdigest()
            if st.st_nlink > 1:
                extra += " hardlink-group=" + groups.setdefault((st.st_dev, st.st_ino), rel)
        elif kind == "link":
            extra = os.readlink(p)
        size = st.st_size if kind == "file" else 0
        out.append(f"{rel} {kind} {oct(stat.S_IMODE(st.st_mode))} {st.st_uid}:{st.st_gid} {size} {extra}")
print("\n".join(sorted(out)))
EOF
}

# build_tricky_image LAYOUT TAG: busybox base plus layers with whiteouts, an opaque
# directory, hard links, symlinks, odd permissions and ownership (umoci writes the
# whiteouts when it repacks a bundle where files were removed).
build_tricky_image() {
  local l=$1 tag=$2 b=$WORK/tricky-bundle
  build_image "$l" "$tag" "$NATIVE" "$WORK" || return 1
  run umoci unpack --image "$l:$tag" "$b" || return 1
  local r=$b/rootfs
  mkdir -p "$r/data/keep" "$r/data/opaque/old" "$r/srv" || return 1
  echo one >"$r/data/file1"; echo two >"$r/data/file2"; echo three >"$r/data/file3"
  echo old >"$r/data/opaque/old/a"
  echo keep >"$r/data/keep/k"
  ln "$r/data/file1" "$r/data/hardlink1" || return 1
  ln -s ../data/file2 "$r/srv/rel-link"; ln -s /data/keep "$r/srv/abs-link"
  chmod 4755 "$r/data/file1"; chmod 0700 "$r/data/keep"; chmod 1777 "$r/srv"
  chown 1234:5678 "$r/data/file2"; mkfifo "$r/data/fifo"
  run umoci repack --image "$l:$tag" "$b" || return 1
  # layer 3: remove a file and a directory (whiteouts), make data/opaque opaque
  rm -f "$r/data/file3"; rm -rf "$r/data/keep"
  rm -rf "$r/data/opaque"; mkdir -p "$r/data/opaque/new"; echo new >"$r/data/opaque/new/b"
  echo changed >"$r/etc/berth-test"
  run umoci repack --image "$l:$tag" "$b" || return 1
  rm -rf "$b"
}

test_run_unpack_matches_umoci() {
  [ "$(id -u)" = 0 ] || skip "needs root (ownership and device comparisons)"
  local l=$WORK/oci
  run umoci init --layout "$l" || die "umoci init"
  build_tricky_image "$l" tricky || die "building the test image"
  # the busybox test images too (one layer each, from the shared layout)
  local t
  for t in amd64 arm64; do
    run_out "$WORK/o" "$WORK/e" unpack "oci:$IMAGES:$t" "$WORK/berth-$t" || die "berth unpack $t failed"
    run umoci unpack --image "$IMAGES:$t" "$WORK/umoci-$t" || die "umoci unpack $t failed"
    diff <(tree_listing "$WORK/umoci-$t/rootfs") <(tree_listing "$WORK/berth-$t/rootfs") >"$WORK/diff.txt" \
      || die "rootfs of $t differs from umoci's: $(head -n 12 "$WORK/diff.txt" | tr '\n' ' ')"
  done
  run_out "$WORK/o" "$WORK/e" unpack "oci:$l:tricky" "$WORK/berth-bundle" || die "berth unpack failed"
  run umoci unpack --image "$l:tricky" "$WORK/umoci-bundle" || die "umoci unpack failed"
  tree_listing "$WORK/berth-bundle/rootfs" >"$WORK/berth.txt"
  tree_listing "$WORK/umoci-bundle/rootfs" >"$WORK/umoci.txt"
  diff "$WORK/umoci.txt" "$WORK/berth.txt" >"$WORK/diff.txt" \
    || die "rootfs differs from umoci's: $(head -n 12 "$WORK/diff.txt" | tr '\n' ' ')"
  # the whiteouts and the opaque directory did their work
  [ ! -e "$WORK/berth-bundle/rootfs/data/file3" ] || die "whited-out file3 exists"
  expect_eq "$(stat -c %u:%g "$WORK/berth-bundle/rootfs/data/file2")" 1234:5678 "owner of data/file2"
  [ ! -e "$WORK/berth-bundle/rootfs/data/keep" ] || die "whited-out directory keep exists"
  [ ! -e "$WORK/berth-bundle/rootfs/data/opaque/old" ] || die "opaque directory kept a lower entry"
  [ -f "$WORK/berth-bundle/rootfs/data/opaque/new/b" ] || die "opaque directory lost its own entry"
  grep -c . "$WORK/berth.txt" >&2
  # config.json: the image's Cmd, and runc accepts the bundle as it is
  expect_eq "$(jq -r '.process.args | join(" ")' "$WORK/berth-bundle/config.json")" "/bin/sh -c echo hello from tricky" "process.args"
  (cd "$WORK/berth-bundle" && run runc --root "$WORK/runc-state" run "berth-test-$$" >"$WORK/runc.out" 2>&1) \
    || die "runc cannot run the bundle berth unpacked: $(tail -n 3 "$WORK/runc.out")"
  grep -q 'hello from tricky' "$WORK/runc.out" || die "runc output: $(cat "$WORK/runc.out")"
}
register run-unpack-matches-umoci test_run_unpack_matches_umoci

# make_layout_with_layer LAYOUT LAYER.tar: an image whose only layer is LAYER.tar
# (uncompressed), tagged "evil".
make_layout_with_layer() {
  local l=$1 layer=$2 ld ls cd cs md ms
  mkdir -p "$l/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$l/oci-layout"
  ld=$(sha256_of "$layer"); ls=$(stat -c %s "$layer"); cp "$layer" "$l/blobs/sha256/$ld"
  printf '{"architecture":"%s","os":"linux","config":{"Cmd":["/bin/true"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$NATIVE" "$ld" >"$WORK/cfg.json"
  cd=$(sha256_of "$WORK/cfg.json"); cs=$(stat -c %s "$WORK/cfg.json"); cp "$WORK/cfg.json" "$l/blobs/sha256/$cd"
  printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$MT_OCI_MANIFEST" "$cd" "$cs" "$ld" "$ls" >"$WORK/m.json"
  md=$(sha256_of "$WORK/m.json"); ms=$(stat -c %s "$WORK/m.json"); cp "$WORK/m.json" "$l/blobs/sha256/$md"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"%s","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"evil"}}]}' \
    "$MT_OCI_MANIFEST" "$md" "$ms" >"$l/index.json"
  echo "sha256:$ld"
}

# Malicious layers (built here with Python's tarfile): each is refused with a message
# naming the layer and the entry, no bundle appears, and the canary directory beside
# the bundle is untouched.
test_run_unpack_refuses_malicious_layers() {
  local canary=$WORK/canary case
  mkdir -p "$canary" && echo original >"$canary/file"
  local before; before=$(tree_listing "$canary")
  for case in dotdot absolute symlink-root symlink-up hardlink-host whiteout-dotdot; do
    python3 - "$WORK/$case.tar" "$case" "$canary" <<'EOF'
import io, sys, tarfile
path, case, canary = sys.argv[1], sys.argv[2], sys.argv[3]
t = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)
def add_file(name, data=b"pwned\n"):
    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
def add_link(name, target, kind=tarfile.SYMTYPE):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; t.addfile(i)
if case == "dotdot":
    add_file("../../canary/file")
elif case == "absolute":
    add_file(canary + "/file")
elif case == "symlink-root":
    add_link("evil", "/"); add_file("evil" + canary + "/file")
elif case == "symlink-up":
    add_link("evil", "../../../../../../.."); add_file("evil" + canary + "/file")
elif case == "hardlink-host":
    add_link("passwd", "/etc/passwd", tarfile.LNKTYPE)
elif case == "whiteout-dotdot":
    d = tarfile.TarInfo("dir"); d.type = tarfile.DIRTYPE; t.addfile(d)
    add_file("dir/.wh..."); add_file(".wh..")
t.close()
EOF
    local l=$WORK/layout-$case ld
    ld=$(make_layout_with_layer "$l" "$WORK/$case.tar") || die "layout for $case"
    run_out "$WORK/o" "$WORK/e" unpack "oci:$l:evil" "$WORK/bundle-$case"
    local rc=$?
    [ "$rc" -ne 0 ] || die "$case: berth unpack accepted a malicious layer"
    grep -q "$ld" "$WORK/e" || die "$case: the error does not name the layer $ld"
    [ ! -e "$WORK/bundle-$case" ] || die "$case: a bundle was left behind"
    ls -a "$WORK" | grep_all "bundle-$case.unpacking" && die "$case: a half-unpacked directory was left behind"
    expect_eq "$(tree_listing "$canary")" "$before" "$case: canary directory"
    expect_eq "$(cat /etc/passwd | head -1 | cut -d: -f1)" root "$case: /etc/passwd"
  done
  true
}
register run-unpack-refuses-malicious-layers test_run_unpack_refuses_malicious_layers

test_run_busybox() {
  [ "$(id -u)" = 0 ] || skip "needs root"
  export BERTH_CACHE=$WORK/cache
  berth_ push "oci:$IMAGES:$NATIVE" "$(reg)/berth/run:img" || die "push"
  local ref=$(reg)/berth/run:img
  run_out "$WORK/o" "$WORK/e" run --rm --timing "$ref" || die "berth run with the image's Cmd failed"
  expect_eq "$(cat "$WORK/o")" "hello from $NATIVE" "output of the image's Cmd"
  grep -q 'timing pull=.* unpack=.* create=.* start=' "$WORK/e" || die "--timing printed no timing line"
  grep -q '(cached)' "$WORK/e" && die "first run claims a cached unpack"
  # arguments override Cmd; the exit code is the command's
  run_out "$WORK/o" "$WORK/e" run --rm --timing "$ref" -- /bin/sh -c 'echo args; exit 7'
  expect_eq "$?" 7 "exit code of the container"
  expect_eq "$(cat "$WORK/o")" args "output with arguments"
  grep -q 'unpack=.*(cached)' "$WORK/e" || die "second run did not reuse the unpacked image"
  run_out "$WORK/o" "$WORK/e" run --rm -e GREETING=hi -w /tmp "$ref" -- /bin/sh -c 'echo "$GREETING $(pwd)"' || die "env/workdir run"
  expect_eq "$(cat "$WORK/o")" "hi /tmp" "--env and --workdir"
  run_out "$WORK/o" "$WORK/e" run --rm -u 1234:99 "$ref" -- /bin/sh -c 'echo "$(id -u):$(id -g)"' || die "user run"
  expect_eq "$(cat "$WORK/o")" "1234:99" "--user"
  run_out "$WORK/o" "$WORK/e" run --rm --read-only "$ref" -- /bin/sh -c 'echo x >/written'
  [ "$?" -ne 0 ] || die "--read-only: writing to / succeeded"
  run_out "$WORK/o" "$WORK/e" run --rm --network none "$ref" -- /bin/ls /sys/class/net || die "network none run"
  expect_eq "$(tr '\n' ' ' <"$WORK/o")" "lo " "interfaces with --network none"
  run_out "$WORK/o" "$WORK/e" run --rm --network host "$ref" -- /bin/ls /sys/class/net || die "network host run"
  expect_eq "$(tr '\n' ' ' <"$WORK/o")" "$(ls /sys/class/net | tr '\n' ' ')" "interfaces with --network host"
  # resource limits reach the container's cgroup (v2 files, else v1)
  run_out "$WORK/o" "$WORK/e" run --rm --memory 64MiB --cpus 0.5 "$ref" -- /bin/sh -c \
    'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; (cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) | cut -d" " -f1' \
    || die "limits run"
  expect_eq "$(tr '\n' ' ' <"$WORK/o")" "67108864 50000 " "memory limit and cpu quota inside the container"
  # a user name resolved through the image's /etc/passwd and /etc/group
  local l=$WORK/users b=$WORK/users-bundle
  cp -a "$IMAGES" "$l"
  run umoci unpack --image "$l:$NATIVE" "$b" || die "unpack for the users image"
  printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1500:1600:app:/home/app:/bin/sh\n' >"$b/rootfs/etc/passwd"
  printf 'root:x:0:\napp:x:1600:\nextra:x:1700:app\n' >"$b/rootfs/etc/group"
  run umoci repack --image "$l:users" "$b" || die "repack users"
  run_out "$WORK/o" "$WORK/e" run --rm -u app "oci:$l:users" -- /bin/sh -c 'echo "$(id -u) $(id -g) $(id -G) $HOME"' || die "run -u app"
  expect_eq "$(cat "$WORK/o")" "1500 1600 1600 1700 /home/app" "uid, gid, groups and HOME of user app"
  run_out "$WORK/o" "$WORK/e" run --rm -u nosuchuser "oci:$l:users" -- /bin/true
  expect_eq "$?" 125 "exit code when the user does not exist in the image"
  grep -q nosuchuser "$WORK/e" || die "unknown user: message does not name the user"
  # a container's writes stay in its own filesystem
  run_out "$WORK/o" "$WORK/e" run --rm "$ref" -- /bin/sh -c 'echo dirty >/etc/berth-test' || die "write run"
  run_out "$WORK/o" "$WORK/e" run --rm "$ref" -- /bin/cat /etc/berth-test || die "read run"
  expect_eq "$(cat "$WORK/o")" "berth-client-test $NATIVE" "file after another container wrote it"
  # from a layout, without a registry
  run_out "$WORK/o" "$WORK/e" run --rm "oci:$IMAGES:$NATIVE" -- /bin/echo layout || die "run from a layout"
  expect_eq "$(cat "$WORK/o")" layout "output of a run from a layout"
  # signals reach the container: SIGTERM to berth ends a sleeping container
  "$BERTH" run --rm "$ref" -- /bin/sh -c 'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.1; done' \
    >"$WORK/sig.out" 2>"$WORK/sig.err" </dev/null &
  local bp=$! i
  for ((i = 0; i < 300; i++)); do grep -q ready "$WORK/sig.out" && break; sleep 0.1; done
  grep -q ready "$WORK/sig.out" || die "the container did not start within 30 s"
  sleep 0.5
  kill -TERM "$bp"
  wait "$bp"
  expect_eq "$?" 42 "exit code after SIGTERM was forwarded"
  grep -q got-term "$WORK/sig.out" || die "the container did not see SIGTERM"
  # nothing left behind by --rm
  expect_eq "$(ls "$BERTH_CACHE/containers" | wc -l)" 0 "containers left after --rm runs"
}
register run-busybox test_run_busybox

# Rootless: an unprivileged user unpacks (no chown; ownership mapped through a user
# namespace in config.json) and runs the image with runc.
test_run_rootless() {
  [ "$(id -u)" = 0 ] || skip "needs root to create the unprivileged test user"
  local user=berth-rootless
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user" || die "useradd"
  local home; home=$(getent passwd "$user" | cut -d: -f6)
  local dir=$home/rt
  rm -rf "$dir"; mkdir -p "$dir"
  cp -a "$IMAGES" "$dir/oci" && chown -R "$user:" "$dir" || die "copying the layout"
  local as=(runuser -u "$user" -- env HOME="$home" BERTH_CACHE="$dir/cache" PATH="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
  "${as[@]}" "$BERTH" unpack --rootless "oci:$dir/oci:$NATIVE" "$dir/bundle" >"$WORK/o" 2>"$WORK/e" \
    || die "rootless unpack failed: $(tail -n 3 "$WORK/e")"
  expect_eq "$(stat -c %U "$dir/bundle/rootfs/bin/busybox")" "$user" "owner of unpacked files (no chown)"
  expect_eq "$(jq -r '.linux.uidMappings[0].hostID' "$dir/bundle/config.json")" "$(id -u "$user")" "uid mapping"
  jq -e '.linux.namespaces | map(.type) | index("user")' "$dir/bundle/config.json" >/dev/null || die "no user namespace in config.json"
  "${as[@]}" "$BERTH" run --rm "oci:$dir/oci:$NATIVE" -- /bin/sh -c 'echo "uid=$(id -u)"' >"$WORK/o" 2>"$WORK/e" \
    || die "rootless run failed: $(tail -n 3 "$WORK/e")"
  expect_eq "$(cat "$WORK/o")" "uid=0" "uid inside the rootless container"
  rm -rf "$dir"
}
register run-rootless test_run_rootless
