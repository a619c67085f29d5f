import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Store } from '../../lib/store/store.js';
import { ANONYMOUS_LABEL } from '../../lib/store/volumes.js';
import { isMountPoint } from '../../lib/system/mountinfo.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  return promise.then(
    () => expect.fail('expected a rejection'),
    (error: unknown) => error as Error & { code?: string },
  );
}

function volumeDirs(root: string): string[] {
  return readdirSync(join(root, 'volumes')).sort();
}

describe('volume store', function () {
  const cleanups = new Cleanups();
  let root: string;
  let store: Store;

  before(function () {
    if (!isRoot) this.skip();
  });
  beforeEach(async function () {
    root = await tmpfsDir(cleanups, '256m');
    store = await Store.open({ root });
    cleanups.defer(() => store.close());
  });
  afterEach(async function () {
    for (const volume of store.volumes.list()) {
      if (isMountPoint(volume.mountpoint)) execFileSync('umount', ['-l', volume.mountpoint]);
    }
    await cleanups.release();
  });

  it('creates named and anonymous volumes laid out as Docker does', async function () {
    const named = await store.volumes.create('data', { labels: { app: 'web' } });
    expect(named).to.include({ name: 'data', driver: 'local', anonymous: false, owner: null, mountpoint: join(root, 'volumes/data/_data') });
    expect(named.labels).to.deep.equal({ app: 'web' });
    expect(statSync(join(root, 'volumes/data')).mode & 0o7777).to.equal(0o701);
    expect(statSync(named.mountpoint).mode & 0o7777).to.equal(0o755);
    const anonymous = await store.volumes.create();
    expect(anonymous.name).to.match(/^[0-9a-f]{64}$/);
    expect(anonymous.labels).to.deep.equal({ [ANONYMOUS_LABEL]: '' });
    expect(volumeDirs(root)).to.deep.equal([anonymous.name, 'data'].sort());
  });

  it('returns the existing volume when a name is created again', async function () {
    const first = await store.volumes.create('again');
    writeFileSync(join(first.mountpoint, 'f'), 'kept');
    const second = await store.volumes.create('again', { labels: { ignored: '1' } });
    expect(second).to.deep.equal(first);
    expect(readFileSync(join(second.mountpoint, 'f'), 'utf8')).to.equal('kept');
  });

  it('rejects invalid names and options with Docker messages, creating nothing', async function () {
    const cases: Array<[string | undefined, Record<string, string>, string, string | RegExp]> = [
      ['a', {}, 'ERR_INVALID_NAME', 'volume name is too short, names should be at least two alphanumeric characters'],
      ['no/slash', {}, 'ERR_INVALID_NAME', /^"no\/slash" includes invalid characters for a local volume name/],
      ['ok1', { foo: 'bar' }, 'ERR_VOLUME_OPTIONS', 'invalid option: "foo"'],
      ['ok1', { device: '/dev/null' }, 'ERR_VOLUME_OPTIONS', 'missing required option: "type"'],
      ['ok1', { type: 'tmpfs' }, 'ERR_VOLUME_OPTIONS', 'missing required option: "device"'],
      ['ok1', { o: 'size=1m' }, 'ERR_VOLUME_OPTIONS', 'missing required option: "type"'],
      ['ok1', { size: '10m' }, 'ERR_VOLUME_OPTIONS', 'quota size requested but no quota support'],
      ['ok1', { type: 'none', o: 'bind', device: '/nonexistent/dir' }, 'ERR_VOLUME_OPTIONS', /^bind source path does not exist or is not a directory/],
      ['ok1', { type: 'none', o: 'bind', device: '/etc' }, 'ERR_VOLUME_OPTIONS', /^refusing to bind-mount \/etc/],
      ['ok1', { type: 'ext4', device: '/dev/nonexistent-disk' }, 'ERR_VOLUME_OPTIONS', 'device /dev/nonexistent-disk does not exist'],
    ];
    for (const [name, options, code, message] of cases) {
      const error = await rejection(store.volumes.create(name, { options }));
      expect(error.code, String(message)).to.equal(code);
      if (typeof message === 'string') expect(error.message).to.equal(message);
      else expect(error.message).to.match(message);
    }
    expect(store.volumes.list()).to.deep.equal([]);
    expect(volumeDirs(root)).to.deep.equal([]);
  });

  it('mounts a tmpfs volume on first use and unmounts it on last use', async function () {
    const volume = await store.volumes.create('scratch', { options: { type: 'tmpfs', device: 'tmpfs', o: 'size=2m,mode=0700' } });
    expect(JSON.parse(readFileSync(join(root, 'volumes/scratch/opts.json'), 'utf8'))).to.deep.equal(volume.options);
    expect(isMountPoint(volume.mountpoint)).to.equal(false);
    await store.volumes.acquire('scratch');
    await store.volumes.acquire('scratch');
    expect(isMountPoint(volume.mountpoint)).to.equal(true);
    expect(statSync(volume.mountpoint).mode & 0o7777).to.equal(0o700);
    expect(store.volumes.get('scratch')!.active).to.equal(2);
    await store.volumes.release('scratch');
    expect(isMountPoint(volume.mountpoint)).to.equal(true);
    await store.volumes.release('scratch');
    expect(isMountPoint(volume.mountpoint)).to.equal(false);
    expect(store.volumes.get('scratch')!.active).to.equal(0);
  });

  it('binds an existing directory (type=none,o=bind) and mounts a filesystem image through a loop device', async function () {
    const host = scratchDir(cleanups, 'host');
    writeFileSync(join(host, 'hello'), 'from the host');
    await store.volumes.create('bound', { options: { type: 'none', o: 'bind', device: host } });
    const bound = await store.volumes.acquire('bound');
    expect(readFileSync(join(bound.mountpoint, 'hello'), 'utf8')).to.equal('from the host');
    await store.volumes.release('bound');
    expect(isMountPoint(bound.mountpoint)).to.equal(false);

    const image = join(scratchDir(cleanups, 'img'), 'fs.ext4');
    execFileSync('truncate', ['-s', '16M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    await store.volumes.create('disk', { options: { type: 'ext4', device: image } });
    const disk = await store.volumes.acquire('disk');
    expect(readdirSync(disk.mountpoint)).to.include('lost+found');
    writeFileSync(join(disk.mountpoint, 'saved'), 'on disk');
    await store.volumes.release('disk');
    expect(isMountPoint(disk.mountpoint)).to.equal(false);
    const again = await store.volumes.acquire('disk');
    expect(readFileSync(join(again.mountpoint, 'saved'), 'utf8')).to.equal('on disk');
    await store.volumes.release('disk');
    // Removing it takes only the volume's directory, not the image it mounted.
    await store.volumes.remove('disk');
    expect(existsSync(image)).to.equal(true);
    await store.volumes.remove('bound');
    expect(readFileSync(join(host, 'hello'), 'utf8')).to.equal('from the host');
  });

  it('lists with filters', async function () {
    await store.volumes.create('alpha', { labels: { tier: 'db', keep: '' } });
    await store.volumes.create('beta', { labels: { tier: 'web' } });
    const anonymous = await store.volumes.create();
    const names = (filters: Parameters<typeof store.volumes.list>[0]) => store.volumes.list(filters).map((v) => v.name);
    expect(names({})).to.deep.equal([anonymous.name, 'alpha', 'beta'].sort());
    expect(names({ name: ['alp'] })).to.deep.equal(['alpha']);
    expect(names({ label: ['tier'] })).to.deep.equal(['alpha', 'beta']);
    expect(names({ label: ['tier=web'] })).to.deep.equal(['beta']);
    expect(names({ label: ['tier', 'keep'] })).to.deep.equal(['alpha']);
    expect(names({ driver: ['local'] })).to.have.length(3);
    expect(names({ driver: ['nfs'] })).to.deep.equal([]);
    expect(names({ dangling: true })).to.have.length(3);
    expect(names({ dangling: false })).to.deep.equal([]);
  });

  it('measures size, removes, and prunes as Docker does', async function () {
    const named = await store.volumes.create('named');
    writeFileSync(join(named.mountpoint, 'a'), Buffer.alloc(1000));
    const anonymous = await store.volumes.create();
    mkdirSync(join(anonymous.mountpoint, 'd'));
    writeFileSync(join(anonymous.mountpoint, 'd/b'), Buffer.alloc(2500));
    execFileSync('ln', [join(anonymous.mountpoint, 'd/b'), join(anonymous.mountpoint, 'hardlink')]);
    expect(store.volumes.size(anonymous.name)).to.equal(2500);
    await store.volumes.create('with-opts', { options: { type: 'tmpfs', device: 'tmpfs' } });
    await store.volumes.create('labelled', { labels: { keep: 'yes' } });

    const first = await store.volumes.prune();
    expect(first).to.deep.equal({ deleted: [anonymous.name], spaceReclaimed: 2500 });
    const filtered = await store.volumes.prune({ all: true, labelNot: ['keep'] });
    expect(filtered).to.deep.equal({ deleted: ['named'], spaceReclaimed: 1000 });
    expect(store.volumes.list().map((v) => v.name)).to.deep.equal(['labelled', 'with-opts']);
    expect(volumeDirs(root)).to.deep.equal(['labelled', 'with-opts']);

    expect(await rejection(store.volumes.remove('missing'))).to.include({ code: 'ERR_VOLUME_UNKNOWN', message: 'get missing: no such volume' });
    await store.volumes.remove('missing', { force: true });
    await store.volumes.remove('labelled');
    expect(volumeDirs(root)).to.deep.equal(['with-opts']);
  });

  it('keeps owners apart', async function () {
    await store.volumes.create('private', { owner: 'alice' });
    await store.volumes.create('shared');
    expect(store.volumes.checkAccess('private', 'alice').owner).to.equal('alice');
    expect(() => store.volumes.checkAccess('private', 'bob')).to.throw('volume private belongs to another owner');
    expect(() => store.volumes.checkAccess('private', null)).to.throw('belongs to another owner');
    store.volumes.checkAccess('shared', 'bob');
    expect(await rejection(store.volumes.create('private', { owner: 'bob' }))).to.include({ code: 'ERR_VOLUME_OWNER' });
  });

  it('repairs stale use counts and stray mounts when the store is opened again', async function () {
    const volume = await store.volumes.create('tmp', { options: { type: 'tmpfs', device: 'tmpfs' } });
    await store.volumes.acquire('tmp');
    // As after a crash: a count with nobody using it, and the options still mounted.
    store.close();
    const reopened = await Store.open({ root });
    cleanups.defer(() => reopened.close());
    expect(reopened.recovered).to.include('volume tmp: unmounted its options, left mounted with no user');
    expect(reopened.recovered).to.include('volume tmp: reset a stale use count (1 to 0)');
    expect(isMountPoint(volume.mountpoint)).to.equal(false);
    store = reopened;
  });
});
