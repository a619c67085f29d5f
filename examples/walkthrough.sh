#!/bin/sh
# The whole story of layered storage, offline, on a throwaway store:
#   a base root filesystem from what Debian's packages put on this machine,
#   two images built from Dockerfiles that share their first steps (cache hits,
#   layer sizes), containers whose changes stay in their own layer
#   (copy-on-write), a volume that outlives its container, and the disk usage.
# Run as root: npm run walkthrough (it compiles dist/ first). Everything happens in a private mount
# namespace and a temporary STRATA_ROOT, removed at the end.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

if [ "$(id -u)" != 0 ]; then
  echo "walkthrough: run as root (it mounts overlays and tmpfs)" >&2
  exit 1
fi
# Mounts made below die with this private namespace, whatever happens.
if [ "${STRATA_WALKTHROUGH_NS:-}" != 1 ]; then
  STRATA_WALKTHROUGH_NS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

work=$(mktemp -d /tmp/strata-walkthrough.XXXXXX)
cleanup() {
  umount -R "$work/root" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A tmpfs store root: overlay works on it everywhere, and it goes in one umount.
mkdir -p "$work/root"
mount -t tmpfs -o size=512m,mode=0700 tmpfs "$work/root"
export STRATA_ROOT="$work/root"

if [ -f "$repo/dist/cli/strata.cjs" ]; then
  strata() { node "$repo/dist/cli/strata.cjs" "$@"; }
else
  strata() { node --import tsx "$repo/lib/cli/main.ts" "$@"; }
fi

# Headings in bold on a terminal only.
if [ -t 1 ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi
# Prints the command as it could be typed (words with spaces quoted), then runs it.
show() {
  printf '$ strata'
  for word in "$@"; do
    case "$word" in *[[:space:]\;\>\$]*) printf " '%s'" "$word" ;; *) printf ' %s' "$word" ;; esac
  done
  printf '\n'
  strata "$@"
}

# --- A base root filesystem, with no download -------------------------------
step "A base root filesystem from this machine's packages"
base="$work/base"
mkdir -p "$base/bin" "$base/etc" "$base/dev" "$base/proc" "$base/sys" "$base/tmp" "$base/root" "$base/run"
chmod 1777 "$base/tmp"
if [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; then
  # Debian's busybox-static: one static binary, every applet a link to it.
  cp /bin/busybox "$base/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$base/bin/$applet"
  done
  echo "busybox-static: $(ls "$base/bin" | wc -l) commands"
else
  # No busybox-static: the host's own shell and coreutils, with the libraries ldd lists.
  for tool in sh cat head mkdir rm wc basename ls id echo; do
    path=$(command -v "$tool" || true)
    [ -n "$path" ] && [ -f "$path" ] && cp -L "$path" "$base/bin/$tool"
    [ -n "$path" ] && [ -f "$path" ] && ldd "$path" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
      mkdir -p "$base$(dirname "$lib")"
      cp -Ln "$lib" "$base$lib"
    done
  done
  echo "host tools and their libraries: $(find "$base" -type f | wc -l) files"
fi
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$base/etc/passwd"
printf 'root:x:0:\n' > "$base/etc/group"
show import "$base" base

# --- Two images sharing their first layers -----------------------------------
step "Build the first image: each instruction is a step, each filesystem step a layer"
show build -t my-app -f "$here/Dockerfile" "$here/app"
step "Its layers: COPY holds the files, RUN the build's output and its cache, the rm only a whiteout"
show image history my-app
echo "(The 400kB cache that 'RUN rm -r \$HOME/.cache' deleted still ships in the layer below it:)"
show image audit my-app

step "Build a second image whose first instructions are the same: those steps come from the cache"
layers_before=$(strata layer ls -q | wc -l)
disk_before=$(du -sb "$STRATA_ROOT" | cut -f1)
show build -t my-final-app -f "$here/Dockerfile.final" "$here/app"
layers_after=$(strata layer ls -q | wc -l)
disk_after=$(du -sb "$STRATA_ROOT" | cut -f1)
show image history my-final-app
echo "New layers: $((layers_after - layers_before)) (the second image's own RUN); store grew by $((disk_after - disk_before)) bytes (that layer and metadata)"

step "Rebuild the first image unchanged: every step is a cache hit"
show build -t my-app -f "$here/Dockerfile" "$here/app"

# --- Containers: copy-on-write ------------------------------------------------
step "Run a container that modifies a file of the image"
show run --name writer my-app /bin/sh -c 'echo "changed by the container" >> /app/bin/greeting; cat /app/bin/greeting'
show container diff writer
echo "The container's layer holds the modified copy:"
echo "\$ cat \"\$(strata container mount writer)/app/bin/greeting\""
cat "$(strata container mount writer)/app/bin/greeting"
strata container unmount writer
echo "The image is unchanged: a new container sees the original file"
show run --rm my-app
show container ls
show container rm writer

# --- Volumes ------------------------------------------------------------------
step "A volume outlives its container"
show volume create notes
show run --rm -v notes:/notes my-app /bin/sh -c 'echo "written by a container that is gone" > /notes/note'
show container ls
show run --rm -v notes:/notes:ro my-app cat /notes/note
show volume ls

# --- Disk usage -----------------------------------------------------------------
step "Disk usage"
show system df
