// What scripts/vm-run promises the command it runs in the UML guest, checked
// from inside: the kernel, the modules, the filesystems and the stdio.
import { expect } from 'chai';
import { existsSync, fstatSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { getXattrSync, setXattrSync } from '../../lib/native/fs.js';
import { Cleanups, isRoot, requireFeature, scratchDir } from '../support/fixtures.js';
import { directIoWorks, inVm, kernelAtLeast, userXattrsWork } from '../support/vm.js';

/** The type of the filesystem mounted last on `point`, from the mount table. */
function fsTypeAt(point: string): string | undefined {
  const fields = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((line) => line.split(' '));
  return fields.filter((f) => f[1] === point).at(-1)?.[2];
}

describe('the vm-run guest', function () {
  const cleanups = new Cleanups();
  before(function () {
    requireFeature(this, inVm, 'not inside scripts/vm-run (run npm run test:vm)');
  });
  afterEach(() => cleanups.release());

  it('runs as root on a kernel with the modules the tests need loaded', function () {
    expect(isRoot).to.equal(true);
    const modules = readFileSync('/proc/modules', 'utf8');
    for (const module of ['loop', 'dm_mod', 'dm_thin_pool', 'overlay']) {
      expect(modules, module).to.match(new RegExp(`^${module} `, 'm'));
    }
    expect(existsSync('/dev/mapper/control')).to.equal(true);
    expect(existsSync('/dev/loop-control')).to.equal(true);
  });

  it('has a writable overlay root, and /tmp on tmpfs with trusted.* xattrs', function () {
    expect(fsTypeAt('/')).to.equal('overlay');
    const file = '/etc/strata-vm-root-write';
    writeFileSync(file, 'x');
    rmSync(file);

    expect(fsTypeAt('/tmp')).to.equal('tmpfs');
    const dir = scratchDir(cleanups);
    const f = join(dir, 'f');
    writeFileSync(f, '');
    setXattrSync(f, 'trusted.strata', Buffer.from('y'));
    expect(getXattrSync(f, 'trusted.strata').toString()).to.equal('y');
  });

  it('shares the project directory read-write at its host path, and starts there', function () {
    expect(process.cwd()).to.equal(new URL('../../', import.meta.url).pathname.replace(/\/$/, ''));
    expect(fsTypeAt(process.cwd())).to.equal('hostfs');
    const file = join(process.cwd(), `.vm-write-test-${process.pid}`);
    cleanups.defer(() => rmSync(file, { force: true }));
    writeFileSync(file, 'written in the guest');
    expect(readFileSync(file, 'utf8')).to.equal('written in the guest');
  });

  it('gives the command /dev/null for stdin and pipes for stdout and stderr', function () {
    expect(fstatSync(0).rdev).to.equal(statSync('/dev/null').rdev);
    expect(fstatSync(1).isFIFO()).to.equal(true);
    expect(fstatSync(2).isFIFO()).to.equal(true);
  });

  it('probes the features its kernel lacks, for tests to skip with the reason', function () {
    const dir = scratchDir(cleanups);
    expect(kernelAtLeast(6, 1)).to.equal(true);
    expect(kernelAtLeast(7, 0)).to.equal(false);
    expect(userXattrsWork(dir)).to.equal(kernelAtLeast(6, 6));
    expect(directIoWorks(dir)).to.equal(kernelAtLeast(6, 6));
  });
});
