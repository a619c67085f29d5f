// A strata-built image in a real Docker engine: saved, loaded by docker, its
// history row for row, and it runs.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { build } from '../../lib/build/builder.js';
import { Store } from '../../lib/store/store.js';
import { busyboxImage } from '../support/busybox-base.js';
import { strata } from '../support/cli.js';
import { BUSYBOX, dockerAvailable, PrivateDocker } from '../support/docker.js';
import { Cleanups, isRoot, requireFeature, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { writeTree } from '../support/trees.js';
import { inVm } from '../support/vm.js';

describe('strata build against a real Docker engine', function () {
  this.timeout(300_000);
  const cleanups = new Cleanups();

  before(function () {
    if (!isRoot) this.skip();
    requireFeature(this, !inVm, 'the Docker engine does not run in the User-Mode Linux guest');
    requireFeature(this, dockerAvailable, 'docker.io (dockerd) is not installed');
    requireFeature(this, existsSync(BUSYBOX), 'busybox-static is not installed');
  });

  after(() => cleanups.release());

  it('saves a built image that docker loads, shows with the same history, and runs', async function () {
    const root = await tmpfsDir(cleanups, '256m');
    const context = scratchDir(cleanups, 'context');
    writeTree(context, { 'src/a.txt': 'alpha\n', 'run.sh': 'cat /app/out.txt; echo "$GREETING from $(pwd)"\n' });
    const store = await Store.open({ root });
    try {
      await busyboxImage(store, cleanups);
      await build(store, {
        context,
        tags: ['built:1'],
        dockerfile: [
          'FROM base',
          'COPY . /app',
          'RUN cat /app/src/a.txt > /app/out.txt && mkdir -p /root/.cache && echo junk > /root/.cache/x',
          'RUN rm -r /root/.cache',
          'ENV GREETING=hello',
          'WORKDIR /app',
          'CMD ["/bin/sh", "/app/run.sh"]',
        ].join('\n'),
      });
    } finally {
      store.close();
    }
    const archive = join(scratchDir(cleanups, 'archive'), 'built.tar');
    const saved = strata(['--root', root, 'save', '-o', archive, 'built:1']);
    expect(saved.code, saved.stderr).to.equal(0);

    const docker = await PrivateDocker.start(cleanups);
    expect(docker.run(['load', '-i', archive])).to.contain('Loaded image: built:1');
    const history = docker.run(['history', '--no-trunc', '--format', '{{.CreatedBy}}|{{.Size}}', 'built:1']).trim().split('\n');
    expect(history).to.have.length(7);
    expect(history[0]).to.equal('/bin/sh -c #(nop)  CMD ["/bin/sh" "/app/run.sh"]|0B');
    expect(history[3]).to.equal('/bin/sh -c rm -r /root/.cache|0B');
    expect(history[4]).to.match(/^\/bin\/sh -c cat \/app\/src\/a\.txt/);
    expect(docker.run(['run', '--rm', '--network=none', 'built:1'])).to.equal('alpha\nhello from /app\n');
  });
});
