import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';

import { beforeFirstSyncedCommit, openDatabase, relaxed, transaction } from '../../lib/store/database.js';
import { othersLive, sessionsDir } from '../../lib/store/sessions.js';
import { Store } from '../../lib/store/store.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';

describe('store sessions', function () {
  const cleanups = new Cleanups();
  afterEach(() => cleanups.release());

  it('marks an open store with a file of its own, removed on close', async function () {
    if (!isRoot) this.skip();
    const root = await tmpfsDir(cleanups);
    const first = await Store.open({ root });
    const second = await Store.open({ root });
    const markers = readdirSync(sessionsDir(root));
    expect(markers).to.have.length(2);
    for (const marker of markers) expect(marker).to.match(new RegExp(`^${process.pid}-\\d+-\\d+$`));
    // This process's own sessions are not others'.
    expect(othersLive(first.db, root)).to.equal(false);
    first.close();
    second.close();
    expect(readdirSync(sessionsDir(root))).to.deep.equal([]);
  });

  it("sees another live process's session, and not once it is gone", async function () {
    if (!isRoot) this.skip();
    const root = await tmpfsDir(cleanups);
    const store = await Store.open({ root });
    cleanups.defer(() => store.close());
    const child = spawn('sleep', ['30']);
    cleanups.defer(() => child.kill());
    await once(child, 'spawn');
    const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    writeFileSync(join(sessionsDir(root), `${child.pid}-${start}-0`), '');
    expect(othersLive(store.db, root)).to.equal(true);
    child.kill();
    await once(child, 'exit');
    expect(othersLive(store.db, root)).to.equal(false);
  });

  it('opens and closes an existing store without writing to its metadata', async function () {
    if (!isRoot) this.skip();
    const root = await tmpfsDir(cleanups);
    (await Store.open({ root })).close();
    const db = join(root, 'image', 'metadata.db');
    const before = statSync(db, { bigint: true });
    const store = await Store.open({ root });
    store.images.list();
    store.close();
    const after = statSync(db, { bigint: true });
    expect([after.size, after.mtimeNs]).to.deep.equal([before.size, before.mtimeNs]);
    expect(existsSync(`${db}-wal`)).to.equal(false);
  });

  it('runs what must precede the first synced commit once, before it, and not for relaxed writes', function () {
    const db = openDatabase(join(scratchDir(cleanups, 'db'), 'metadata.db'));
    cleanups.defer(() => db.close());
    const calls: string[] = [];
    beforeFirstSyncedCommit(db, () => calls.push(`hook, in a transaction: ${db.inTransaction}`));
    relaxed(db, () => db.prepare("INSERT INTO settings (key, value) VALUES ('a', '1')").run());
    expect(calls).to.deep.equal([]);
    transaction(db, () => {
      calls.push('first');
      transaction(db, () => calls.push('nested'));
    });
    transaction(db, () => calls.push('second'));
    expect(calls).to.deep.equal(['hook, in a transaction: false', 'first', 'nested', 'second']);
  });
});
