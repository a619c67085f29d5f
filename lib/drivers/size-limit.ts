import { StoreError } from '../store/errors.js';

/** Drivers without a quota mechanism say so, as Docker does for --storage-opt size. */
export function refuseSizeLimit(driver: string): never {
  throw new StoreError(
    'ERR_DRIVER_UNSUPPORTED',
    `${driver}: a size limit needs the btrfs driver here (qgroups); ${driver} cannot limit a container's size`,
  );
}
