import { expect } from 'chai';
import { copyFileSync, createReadStream, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Store } from '../../lib/store/store.js';
import { mountsBelow } from '../../lib/system/mountinfo.js';
import { strata } from '../support/cli.js';
import { Cleanups, isRoot, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { tarOf, writeTree } from '../support/trees.js';

const BUSYBOX = '/bin/busybox';

describe('strata run', function () {
  const cleanups = new Cleanups();
  let root: string;
  let layer: string;

  before(function () {
    if (!isRoot) this.skip();
  });

  beforeEach(async function () {
    root = await tmpfsDir(cleanups, '256m');
    const src = scratchDir(cleanups, 'image');
    writeTree(src, { 'etc/motd': 'from the image\n', 'data/seed': 'seeded by the image\n', 'bin/': '' });
    copyFileSync(BUSYBOX, join(src, 'bin/busybox'));
    symlinkSync('busybox', join(src, 'bin/sh'));
    const store = await Store.open({ root });
    try {
      const tar = tarOf(src, join(scratchDir(cleanups, 'tar'), 'image.tar'));
      layer = (await store.layers.import(createReadStream(tar), { explicit: true })).layer.chainId;
    } finally {
      store.close();
    }
  });

  afterEach(() => cleanups.release());

  const run = (...args: string[]) => strata(['--root', root, 'run', ...args]);

  it('runs a command chrooted in new pid, mount and uts namespaces, with its exit status', function () {
    const result = run('--rm', layer, '/bin/sh', '-c', 'echo pid=$$; cat /etc/motd; hostname; ls /dev; exit 7');
    expect(result.stderr).to.equal('');
    expect(result.code).to.equal(7);
    const lines = result.stdout.split('\n');
    expect(lines[0]).to.equal('pid=1');
    expect(lines[1]).to.equal('from the image');
    expect(lines[2]).to.match(/^[0-9a-f]{12}$/);
    expect(lines.slice(3, 9)).to.deep.equal(['full', 'null', 'random', 'tty', 'urandom', 'zero']);
    expect(mountsBelow(root)).to.deep.equal([root]);
    expect(strata(['--root', root, 'container', 'ls', '-q']).stdout).to.equal('');
  });

  it('sees only its own processes in /proc, and the devices work', function () {
    const result = run('--rm', layer, '/bin/busybox', 'sh', '-c', 'ls /proc | grep -c "^[0-9]"; head -c 4 /dev/zero | wc -c; echo gone > /dev/null');
    expect(result.code, result.stderr).to.equal(0);
    // sh and the two pipelines' processes at most.
    expect(Number(result.stdout.split('\n')[0])).to.be.within(1, 4);
    expect(result.stdout.split('\n')[1]!.trim()).to.equal('4');
  });

  it('keeps data written to a volume across containers, and not what is written to the container layer', function () {
    const first = run('--rm', '-v', 'keep:/data', '--mount', 'type=volume,target=/scratch', layer, '/bin/sh', '-c',
      'cat /data/seed && echo persisted > /data/note && echo lost > /etc/note && echo anon > /scratch/x');
    expect(first.code, first.stderr).to.equal(0);
    // The named volume was filled from the image's /data on first use.
    expect(first.stdout).to.equal('seeded by the image\n');
    // --rm removed the anonymous volume, not the named one.
    expect(strata(['--root', root, 'volume', 'ls', '-q']).stdout).to.equal('keep\n');

    const second = run('--rm', '--mount', 'source=keep,target=/data,readonly', layer, '/bin/sh', '-c',
      'cat /data/note; cat /etc/note 2>/dev/null || echo "no /etc/note"; echo x > /data/y 2>/dev/null || echo read-only');
    expect(second.code, second.stderr).to.equal(0);
    expect(second.stdout).to.equal('persisted\nno /etc/note\nread-only\n');
    expect(readFileSync(join(root, 'volumes/keep/_data/note'), 'utf8')).to.equal('persisted\n');
    expect(mountsBelow(root)).to.deep.equal([root]);
  });

  it('keeps a container without --rm, and its mounts are recorded', function () {
    const host = scratchDir(cleanups, 'host');
    writeFileSync(join(host, 'in'), 'host file\n');
    const result = run('--name', 'kept', '-v', `${host}:/host`, '--mount', 'type=tmpfs,target=/tmp', layer, '/bin/sh', '-c', 'cat /host/in; echo out > /host/out; touch /tmp/t');
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.equal('host file\n');
    expect(readFileSync(join(host, 'out'), 'utf8')).to.equal('out\n');
    const [inspect] = JSON.parse(strata(['--root', root, 'container', 'inspect', 'kept']).stdout) as Array<{ HostConfig: { Mounts: Array<{ type: string; target: string }> } }>;
    expect(inspect!.HostConfig.Mounts.map((m) => `${m.type} ${m.target}`)).to.deep.equal(['tmpfs /tmp', 'bind /host']);
    expect(mountsBelow(root)).to.deep.equal([root]);
    expect(strata(['--root', root, 'container', 'rm', 'kept']).code).to.equal(0);
  });

  it('fails clearly for bad input, leaving nothing behind', function () {
    const cases: Array<[string[], number, RegExp]> = [
      [['--mount', 'type=bind,target=/x', layer, '/bin/sh'], 2, /^Error: invalid argument "type=bind,target=\/x" for "--mount" flag: invalid mount config for type "bind": field Source must not be empty$/],
      [['-v', 'a:b:c:d', layer, '/bin/sh'], 2, /^Error: invalid argument "a:b:c:d" for "-v, --volume" flag: invalid spec: a:b:c:d: too many colons$/],
      [['-v', '/etc:/etc2', layer, '/bin/sh'], 1, /^Error: refusing to bind-mount \/etc/],
      [['--mount', 'type=bind,source=/nonexistent/src,target=/x', layer, '/bin/sh'], 1, /bind source path does not exist: \/nonexistent\/src$/],
      [['nosuchlayer', '/bin/sh'], 1, /^Error: .*nosuchlayer/],
      [[layer, '/bin/no-such-command'], 127, /No such file or directory/],
    ];
    for (const [args, code, message] of cases) {
      const result = run('--rm', ...args);
      expect(result.code, args.join(' ')).to.equal(code);
      expect(result.stderr.trim(), args.join(' ')).to.match(message);
    }
    expect(strata(['--root', root, 'container', 'ls', '-q']).stdout).to.equal('');
    expect(strata(['--root', root, 'volume', 'ls', '-q']).stdout).to.equal('');
    expect(mountsBelow(root)).to.deep.equal([root]);
  });
});
