// Image references as docker reads them: [domain/]path[:tag][@sha256:...],
// shown in their familiar form (docker.io/library/alpine:latest is alpine:latest).
import { isDigest, type Digest } from '../store/digest.js';
import { StoreError } from '../store/errors.js';

export interface Reference {
  /** The familiar repository name: "alpine", "user/app", "registry:5000/app". */
  repository: string;
  tag?: string;
  digest?: Digest;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME = 255;

function invalid(reference: string, why: string): StoreError {
  return new StoreError('ERR_INVALID_REFERENCE', `invalid reference format "${reference}": ${why}`);
}

export function parseReference(reference: string): Reference {
  let rest = reference;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const value = rest.slice(at + 1);
    if (!isDigest(value)) throw invalid(reference, 'the digest must be sha256: and 64 lower-case hex digits');
    digest = value;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(reference, `"${tag}" is not a valid tag`);
  }
  if (rest.length === 0 || rest.length > MAX_NAME) throw invalid(reference, 'the repository name must be 1 to 255 characters');
  const parts = rest.split('/');
  // The first part is a registry domain when it looks like one, as docker decides.
  const first = parts[0]!;
  const hasDomain = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasDomain && !DOMAIN.test(first)) throw invalid(reference, `"${first}" is not a valid registry`);
  for (const part of hasDomain ? parts.slice(1) : parts) {
    if (!COMPONENT.test(part)) throw invalid(reference, 'repository names must be lower-case letters, digits and separators');
  }
  const onDockerHub = !hasDomain || first === 'docker.io' || first === 'index.docker.io';
  let repository = hasDomain && onDockerHub ? parts.slice(1).join('/') : rest;
  const path = repository.split('/');
  if (onDockerHub && path.length === 2 && path[0] === 'library') repository = path[1]!;
  return { repository, ...(tag !== undefined && { tag }), ...(digest && { digest }) };
}

/** A reference naming a tag: "alpine" means "alpine:latest"; digests are not tags. */
export function normalizeTag(reference: string): string {
  const parsed = parseReference(reference);
  if (parsed.digest) throw invalid(reference, 'a digest reference cannot be used as a tag');
  return `${parsed.repository}:${parsed.tag ?? 'latest'}`;
}

/** docker.io/library/alpine:latest for alpine:latest, as OCI annotations name images. */
export function fullName(familiar: string): string {
  const first = familiar.split('/')[0]!;
  const hasDomain = familiar.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasDomain) return familiar;
  return familiar.includes('/') ? `docker.io/${familiar}` : `docker.io/library/${familiar}`;
}
