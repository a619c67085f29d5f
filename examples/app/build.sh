#!/bin/sh
# The example's "make /app": writes the program, and leaves a build cache in
# $HOME/.cache as compilers and package managers do.
set -e
mkdir -p "$HOME/.cache/objects" /app/bin
for source in /app/src/*.txt; do
  # Pretend compilation: intermediate objects in the cache, the result in /app/bin.
  head -c 200000 /dev/urandom > "$HOME/.cache/objects/$(basename "$source" .txt).o"
  cat "$source" >> /app/bin/greeting
done
echo "built $(wc -l < /app/bin/greeting) lines into /app/bin/greeting"
