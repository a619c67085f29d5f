// Schema migrations, applied in order; PRAGMA user_version counts those applied.
// Never edit a migration that has shipped: add a new one.
export const migrations: readonly string[] = [
  `
  CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );

  -- Read-only image layers. refs counts what holds the layer: child layers,
  -- images, containers, and an explicit import (explicit = 1).
  CREATE TABLE layers (
    chain_id     TEXT PRIMARY KEY,
    diff_id      TEXT NOT NULL,
    parent       TEXT REFERENCES layers(chain_id),
    cache_id     TEXT NOT NULL UNIQUE,
    driver       TEXT NOT NULL,
    tar_size     INTEGER NOT NULL,
    content_size INTEGER NOT NULL,
    entries      INTEGER NOT NULL,
    tar_split    BLOB NOT NULL,
    explicit     INTEGER NOT NULL DEFAULT 0,
    refs         INTEGER NOT NULL DEFAULT 0,
    created      TEXT NOT NULL
  );
  CREATE INDEX layers_parent ON layers(parent);
  CREATE INDEX layers_diff_id ON layers(diff_id);

  -- Work under way: a directory that exists only while its owner process
  -- runs. The next open removes those whose owner is gone.
  CREATE TABLE staging (
    path      TEXT PRIMARY KEY,
    pid       INTEGER NOT NULL,
    pid_start TEXT NOT NULL,
    created   TEXT NOT NULL
  );
  `,
  `
  -- Container layers: a writable layer (cache_id, the driver's directory) on
  -- a read-only layer, which it holds a reference to. mounts counts the
  -- callers that asked for it mounted; the last unmount detaches it.
  CREATE TABLE containers (
    id       TEXT PRIMARY KEY,
    name     TEXT UNIQUE,
    layer    TEXT NOT NULL REFERENCES layers(chain_id),
    cache_id TEXT NOT NULL UNIQUE,
    driver   TEXT NOT NULL,
    options  TEXT NOT NULL,
    mounts   INTEGER NOT NULL DEFAULT 0,
    created  TEXT NOT NULL
  );
  CREATE INDEX containers_layer ON containers(layer);
  `,
  `
  -- Volumes (the local driver): data under volumes/<name>/_data. options are
  -- the driver's type/device/o; active counts the users of a volume whose
  -- options are mounted on _data (the last one unmounts it).
  CREATE TABLE volumes (
    name      TEXT PRIMARY KEY,
    driver    TEXT NOT NULL,
    labels    TEXT NOT NULL,
    options   TEXT NOT NULL,
    anonymous INTEGER NOT NULL,
    owner     TEXT,
    active    INTEGER NOT NULL DEFAULT 0,
    created   TEXT NOT NULL
  );

  -- A container's mounts, in order; volume names the volume a mount uses,
  -- which is what holds a reference on it.
  CREATE TABLE container_mounts (
    container TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    spec      TEXT NOT NULL,
    volume    TEXT REFERENCES volumes(name),
    PRIMARY KEY (container, position)
  );
  CREATE INDEX container_mounts_volume ON container_mounts(volume);

  ALTER TABLE containers ADD COLUMN owner TEXT;
  `,
  `
  -- A container's writable directory being moved into a new layer by a
  -- commit (overlay's adopt-in-place). Written in the transaction that
  -- registers the layer; the move happens after it, and the next open redoes
  -- a move a crash interrupted.
  CREATE TABLE adoptions (
    from_path TEXT PRIMARY KEY,
    to_path   TEXT NOT NULL
  );
  `,
  `
  -- devicemapper: the thin device id of each layer and container (key: its
  -- cache id; "base" for the base device). A row is committed before its
  -- thin device is created and deleted after the device is, so every id in
  -- the pool has a row; a row whose layer never committed is staged work,
  -- removed with it on the next open.
  CREATE TABLE dm_devices (
    key     TEXT PRIMARY KEY,
    thin_id INTEGER NOT NULL UNIQUE
  );
  `,
  `
  -- Images: the config JSON kept byte-exact (the ID is its sha256). An image
  -- holds one reference on its top layer (NULL for an image without layers).
  CREATE TABLE images (
    id        TEXT PRIMARY KEY,
    config    BLOB NOT NULL,
    top_layer TEXT REFERENCES layers(chain_id),
    created   TEXT NOT NULL,
    added     TEXT NOT NULL
  );
  -- Tags: a familiar name:tag (as docker prints it) on one image.
  CREATE TABLE image_tags (
    name  TEXT PRIMARY KEY,
    image TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    added TEXT NOT NULL
  );
  CREATE INDEX image_tags_image ON image_tags(image);
  -- Manifests an image came with, so name@digest references resolve.
  CREATE TABLE image_manifests (
    digest     TEXT NOT NULL,
    image      TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    media_type TEXT NOT NULL,
    manifest   BLOB NOT NULL,
    PRIMARY KEY (digest, image)
  );
  -- Which image a container was created from (its layer is in containers).
  CREATE TABLE container_images (
    container TEXT PRIMARY KEY REFERENCES containers(id) ON DELETE CASCADE,
    image     TEXT NOT NULL REFERENCES images(id)
  );
  CREATE INDEX container_images_image ON container_images(image);
  `,
  `
  -- A bind mount whose creator allowed a sensitive source: the source is
  -- checked again when the container is mounted, as it may have changed.
  ALTER TABLE container_mounts ADD COLUMN allow_sensitive INTEGER NOT NULL DEFAULT 0;
  `,
  `
  -- Disk usage kept as counters so \`system df\` reads them instead of walking
  -- trees: a container's writable layer changes only while it is mounted, so
  -- its size (docker's SizeRw) is measured at create (0), at its last unmount
  -- and at commit. NULL: not known (a container from before this migration,
  -- one mounted when a process crashed, or one unmounted on a driver that can
  -- size it only by a diff against its layers); the next df measures it.
  ALTER TABLE containers ADD COLUMN size_rw INTEGER;
  -- Container labels (key to value, JSON), for prune's label filters.
  ALTER TABLE containers ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
  `,
  `
  -- Processes that have the store open (pid and start time, as staging
  -- keeps them): a row whose process is gone marks an unclean shutdown,
  -- and the next open checks and repairs the store.
  CREATE TABLE sessions (
    id        INTEGER PRIMARY KEY,
    pid       INTEGER NOT NULL,
    pid_start TEXT NOT NULL,
    opened    TEXT NOT NULL
  );
  -- References a process holds on a layer while its work is under way (an
  -- image import between a layer and its image row). Counted in refs; the
  -- holds of a dead process are released by the next open.
  CREATE TABLE layer_holds (
    id        INTEGER PRIMARY KEY,
    layer     TEXT NOT NULL REFERENCES layers(chain_id),
    pid       INTEGER NOT NULL,
    pid_start TEXT NOT NULL
  );
  CREATE INDEX layer_holds_layer ON layer_holds(layer);
  -- fsck counts each layer's users, images among them.
  CREATE INDEX images_top_layer ON images(top_layer);
  -- The process moving a container's directory into its layer: another
  -- process's open finishes the move only once that one is gone.
  ALTER TABLE adoptions ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE adoptions ADD COLUMN pid_start TEXT NOT NULL DEFAULT '';
  `,
  `
  -- The build cache: what a build step made from the image state it started
  -- at (parent: that state's config id, or "scratch"), given its normalized
  -- instruction and the digest of its COPY/ADD sources ('' for none). config
  -- is the resulting state's image config; an entry holds a reference on its
  -- top layer, so the layers outlive the images built from them, as Docker's
  -- intermediate images do.
  CREATE TABLE build_cache (
    parent      TEXT NOT NULL,
    instruction TEXT NOT NULL,
    sources     TEXT NOT NULL,
    id          TEXT NOT NULL,
    config      BLOB NOT NULL,
    top_layer   TEXT REFERENCES layers(chain_id),
    created     TEXT NOT NULL,
    last_used   TEXT NOT NULL,
    PRIMARY KEY (parent, instruction, sources)
  );
  CREATE INDEX build_cache_top_layer ON build_cache(top_layer);
  -- Content hashes of build-context files by path, valid while the file's
  -- stamp (device, inode, size, mode, times) is unchanged: a rebuild does not
  -- read unchanged files again.
  CREATE TABLE build_file_hashes (
    path  TEXT PRIMARY KEY,
    stamp TEXT NOT NULL,
    hash  BLOB NOT NULL
  );
  `,
  `
  -- A process mounting, unmounting or removing a container: the check of
  -- whether its root filesystem is mounted and the mount or unmount that
  -- follows must not interleave with another process's. Others wait; a
  -- claim whose process is gone (pid and start time, as staging keeps them)
  -- is broken by the next one to want it.
  CREATE TABLE container_claims (
    container TEXT PRIMARY KEY REFERENCES containers(id) ON DELETE CASCADE,
    pid       INTEGER NOT NULL,
    pid_start TEXT NOT NULL
  );
  `,
  `
  -- SHA-256 checkpoints of each layer's tar (lib/native/digest.ts): an export
  -- checks the stretches between them in parallel. NULL for layers imported
  -- before, which export checks in one sequence.
  ALTER TABLE layers ADD COLUMN sha256_checkpoints BLOB;
  `,
];
