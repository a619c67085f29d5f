// Engine errors carry a stable code (ERR_*), as classic-level's do; syscall
// failures keep their errno codes instead.
export type StoreErrorCode =
  | 'ERR_LAYER_UNKNOWN'
  | 'ERR_LAYER_AMBIGUOUS'
  | 'ERR_LAYER_IN_USE'
  | 'ERR_INVALID_DIGEST'
  | 'ERR_DIGEST_MISMATCH'
  | 'ERR_DRIVER_UNSUPPORTED'
  | 'ERR_DRIVER_MISMATCH'
  | 'ERR_DRIVER_BUSY'
  | 'ERR_DRIVER_NO_SPACE'
  | 'ERR_STORE_SCHEMA'
  | 'ERR_INVALID_NAME'
  | 'ERR_NAME_IN_USE'
  | 'ERR_CONTAINER_UNKNOWN'
  | 'ERR_CONTAINER_AMBIGUOUS'
  | 'ERR_CONTAINER_BUSY'
  | 'ERR_VOLUME_UNKNOWN'
  | 'ERR_VOLUME_IN_USE'
  | 'ERR_VOLUME_OPTIONS'
  | 'ERR_VOLUME_OWNER'
  | 'ERR_MOUNT_INVALID'
  | 'ERR_IMAGE_UNKNOWN'
  | 'ERR_IMAGE_AMBIGUOUS'
  | 'ERR_IMAGE_IN_USE'
  | 'ERR_INVALID_REFERENCE'
  | 'ERR_IMAGE_INVALID'
  | 'ERR_INVALID_FILTER';

export class StoreError extends Error {
  readonly code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string) {
    super(message);
    this.name = 'StoreError';
    this.code = code;
  }
}
