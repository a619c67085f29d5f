import { expect } from 'chai';

import { build } from '../../lib/build/builder.js';
import { auditImage, type AuditReport } from '../../lib/images/audit.js';
import { Store } from '../../lib/store/store.js';
import { busyboxImage } from '../support/busybox-base.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { writeTree } from '../support/trees.js';

describe('strata image audit', function () {
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
    await busyboxImage(store, cleanups);
  });

  afterEach(() => cleanups.release());

  async function buildImage(dockerfile: string, files: Record<string, string> = {}) {
    const context = scratchDir(cleanups, 'context');
    writeTree(context, { 'keep.txt': 'kept\n', ...files });
    return (await build(store, { dockerfile, context, tags: ['audited'] })).image;
  }

  it('lists files a later layer deleted, with their sizes and the layers involved', async function () {
    const image = await buildImage(
      [
        'FROM base',
        'RUN mkdir -p /root/.cache/pip /opt/data && head -c 40000 /dev/urandom > /root/.cache/pip/wheel && head -c 1000 /dev/urandom > /opt/data/a && echo b > /opt/data/b',
        'RUN rm -r /root/.cache && rm /opt/data/a',
        'RUN rm -r /opt/data && mkdir /opt/data && echo new > /opt/data/c',
      ].join('\n'),
    );
    const report = await auditImage(store, image);
    const byPath = new Map(report.deleted.map((d) => [d.path, d]));
    expect([...byPath.keys()].sort()).to.deep.equal(['/opt/data/a', '/opt/data/b', '/root/.cache/pip/wheel']);
    expect(byPath.get('/root/.cache/pip/wheel')).to.deep.include({ size: 40000 });
    expect(byPath.get('/root/.cache/pip/wheel')!.addedIn.index).to.equal(1);
    expect(byPath.get('/root/.cache/pip/wheel')!.deletedIn.index).to.equal(2);
    expect(byPath.get('/root/.cache/pip/wheel')!.deletedIn.createdBy).to.equal('/bin/sh -c rm -r /root/.cache && rm /opt/data/a');
    expect(byPath.get('/opt/data/b')!.deletedIn.index).to.equal(3);
    expect(report.deletedBytes).to.equal(40000 + 1000 + 2);
    expect(report.secrets).to.deep.equal([]);
  });

  it('flags likely secrets in any layer, also those a later layer deleted', async function () {
    const key = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n';
    const image = await buildImage(
      [
        'FROM base',
        'COPY id_ed25519 /root/.ssh/id_ed25519',
        'COPY app.env /app/.env',
        'COPY settings.ini /app/settings.ini',
        'RUN mkdir -p /root/.aws && printf "[default]\\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\\n" > /root/.aws/credentials',
        'RUN rm /root/.ssh/id_ed25519',
      ].join('\n'),
      { id_ed25519: key, 'app.env': 'DB_PASSWORD=hunter2\n', 'settings.ini': 'token = ghp_abcdefghijklmnopqrstuvwxyz0123456789\n' },
    );
    const report = await auditImage(store, image);
    const found = report.secrets.map((s) => `${s.path} ${s.kind} ${s.deleted ? 'hidden' : 'visible'}`).sort();
    expect(found).to.deep.equal([
      '/app/.env .env file visible',
      '/app/settings.ini GitHub token visible',
      '/root/.aws/credentials AWS access key id visible',
      '/root/.aws/credentials AWS credentials visible',
      '/root/.ssh/id_ed25519 SSH private key hidden',
      '/root/.ssh/id_ed25519 private key hidden',
    ]);
    expect(report.deleted.map((d) => d.path)).to.deep.equal(['/root/.ssh/id_ed25519']);

    const table = strata(['--root', root, 'image', 'audit', 'audited']);
    expect(table.code, table.stderr).to.equal(0);
    expect(table.stdout).to.match(/^Deleted in a later layer, still shipped: 1 file\(s\), 95B\nPATH +SIZE +ADDED IN LAYER +DELETED IN LAYER\n\/root\/\.ssh\/id_ed25519 +95B +1 [0-9a-f]{12} +5 [0-9a-f]{12}\n/);
    expect(table.stdout).to.contain('\nLikely secrets: 6\n');
    expect(table.stdout).to.match(/\/root\/\.ssh\/id_ed25519 +SSH private key +1 [0-9a-f]{12} +yes \(still in the image\)/);
    const json = JSON.parse(strata(['--root', root, 'image', 'audit', '--format', 'json', 'audited']).stdout) as AuditReport;
    expect(json.image).to.equal(image.id);
    expect(json.secrets).to.have.length(6);
  });
});
