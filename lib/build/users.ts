// USER and --chown by name: looked up in the image's own /etc/passwd and
// /etc/group, as docker does, never the host's.
import { readFile } from 'node:fs/promises';

import { pathInTree } from './copy.js';

export interface Identity {
  uid: number;
  gid: number;
  /** The user's home directory from /etc/passwd, when it names the user. */
  home?: string;
}

async function readDatabase(rootfs: string | undefined, file: string): Promise<string[][]> {
  const path = rootfs === undefined ? undefined : await pathInTree(rootfs, file);
  if (!path) return [];
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => line.split(':'));
}

const isNumeric = (text: string) => /^\d+$/.test(text);

/** "user", "user:group", "uid:gid"... in the root filesystem's terms (numbers only without one: FROM scratch). */
export async function resolveIdentity(rootfs: string | undefined, spec: string): Promise<Identity> {
  const [user = '', group] = spec.split(':');
  const passwd = await readDatabase(rootfs, '/etc/passwd');
  const entry = passwd.find((fields) => (isNumeric(user) ? fields[2] === user : fields[0] === user));
  if (!entry && !isNumeric(user)) throw new Error(`unable to find user ${user}: no matching entries in the image's /etc/passwd`);
  const uid = Number(entry ? entry[2] : user);
  let gid = entry ? Number(entry[3]) : 0;
  if (group !== undefined && group !== '') {
    if (isNumeric(group)) gid = Number(group);
    else {
      const found = (await readDatabase(rootfs, '/etc/group')).find((fields) => fields[0] === group);
      if (!found) throw new Error(`unable to find group ${group}: no matching entries in the image's /etc/group`);
      gid = Number(found[2]);
    }
  }
  return { uid, gid, ...(entry?.[5] && { home: entry[5] }) };
}
