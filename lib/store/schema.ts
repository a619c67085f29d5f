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
];
