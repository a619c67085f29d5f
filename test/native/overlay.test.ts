import { expect } from 'chai';
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { native } from '../../lib/native/binding.js';
import { unmount } from '../../lib/native/mount.js';
import { mountOverlay, probeOverlayFeatures, type OverlayMethod, type OverlayOptions } from '../../lib/native/overlay.js';
import { Cleanups, isRoot, mountsBelow, requireFeature, scratchDir, tmpfsDir } from '../support/fixtures.js';
import { kernelAtLeast } from '../support/vm.js';

/** The mount options of the overlay at `point`, from /proc/self/mountinfo. */
function superOptions(point: string): string[] {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === point);
  if (!line) throw new Error(`${point} is not a mount point`);
  const fields = line.split(' ');
  return (fields[fields.indexOf('-') + 3] ?? '').split(',');
}

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

const methods: Array<'lowerdir+' | 'legacy'> = ['lowerdir+', 'legacy'];

// Linux 6.18 (the host) has lowerdir+; the VM's 6.1 has only the legacy method,
// which is what 'auto' falls back to there.
const noLowerdirPlus = 'overlay lowerdir+ needs Linux 6.8';
function methodWorks(method: 'lowerdir+' | 'legacy'): boolean {
  return method === 'legacy' || probeOverlayFeatures().lowerdirPlus;
}

describe('native overlay mounts', function () {
  const cleanups = new Cleanups();
  let base = '';
  before(function () {
    if (!isRoot) this.skip();
  });
  beforeEach(async function () {
    base = await tmpfsDir(cleanups, '64m');
  });
  afterEach(() => cleanups.release());

  function dirs(...names: string[]): string[] {
    return names.map((name) => {
      const dir = join(base, name);
      mkdirSync(dir, { recursive: true });
      return dir;
    });
  }

  async function mounted(method: OverlayMethod, options: OverlayOptions, name = 'merged') {
    const [target] = dirs(`${name}-${method}`) as [string];
    const result = await mountOverlay(target, { ...options, method });
    cleanups.defer(() => unmount(target, ['detach']));
    return { target, result };
  }

  it('probes the kernel: lowerdir+, layers by fd, options, 500 layers, module parameters', function () {
    const features = probeOverlayFeatures();
    if (kernelAtLeast(6, 13)) {
      // The host (Linux 6.18): every probed feature exists.
      expect(features).to.deep.include({
        available: true, paramsChecked: true, lowerdirPlus: true, datadirPlus: true, layersByFd: true,
        metacopy: true, index: true, redirectDir: true, volatile: true, userxattr: true, maxLowers: 500,
      });
    } else if (!kernelAtLeast(6, 5)) {
      // The VM (Linux 6.1): no fs_context of overlay's own, so nothing new-API.
      expect(features).to.deep.include({
        available: true, paramsChecked: false, lowerdirPlus: false, datadirPlus: false, layersByFd: false,
        volatile: false, userxattr: false, maxLowers: 500,
      });
    }
    expect(features.moduleParams).to.have.property('index').that.matches(/^[YN]$/);
    expect(features.moduleParams).to.have.property('metacopy');
    expect(probeOverlayFeatures()).to.deep.equal(features);
  });

  for (const method of methods) {
    describe(`by ${method}`, function () {
      beforeEach(function () {
        requireFeature(this, methodWorks(method), noLowerdirPlus);
      });

      it('mounts two lowers read-only, and one lower under an upper dir', async function () {
        const [top, bottom, upper, work] = dirs('top', 'bottom', 'upper', 'work') as [string, string, string, string];
        writeFileSync(join(bottom, 'f'), 'bottom');
        const { target, result } = await mounted(method, { lowers: [top, bottom] });
        expect(result).to.deep.equal({ method, layersByFd: 0 });
        expect(mountsBelow(target)).to.deep.equal([target]);
        expect(readFileSync(join(target, 'f'), 'utf8')).to.equal('bottom');
        expect(() => writeFileSync(join(target, 'g'), 'x')).to.throw().with.property('code', 'EROFS');
        const one = await mounted(method, { lowers: [bottom], upper, work }, 'one');
        expect(readFileSync(join(one.target, 'f'), 'utf8')).to.equal('bottom');
        writeFileSync(join(one.target, 'g'), 'x');
        expect(readdirSync(upper)).to.deep.equal(['g']);
      });

      it('stacks 500 lowers: every file visible, the top-most wins', async function () {
        const lowers: string[] = [];
        for (let i = 0; i < 500; i++) {
          const [dir] = dirs(`layers/layer-${String(i).padStart(3, '0')}`) as [string];
          writeFileSync(join(dir, `file-${i}`), String(i));
          writeFileSync(join(dir, 'shadowed'), String(i));
          lowers.push(dir);
        }
        const { target, result } = await mounted(method, { lowers });
        // Legacy needs fds here: 500 full paths are about 20 KiB, far over a page.
        expect(result).to.deep.equal({ method, layersByFd: method === 'legacy' ? 500 : 0 });
        const names = readdirSync(target);
        expect(names).to.have.length(501);
        for (let i = 0; i < 500; i++) expect(readFileSync(join(target, `file-${i}`), 'utf8')).to.equal(String(i));
        expect(readFileSync(join(target, 'shadowed'), 'utf8')).to.equal('0');
        expect(superOptions(target).join(',')).to.include(method === 'legacy' ? 'lowerdir=' : 'lowerdir+=');
      });

      it('copies up into the upper dir and leaves the lowers alone', async function () {
        const [top, bottom, upper, work] = dirs('top', 'bottom', 'upper', 'work') as [string, string, string, string];
        writeFileSync(join(top, 'a'), 'top a');
        writeFileSync(join(bottom, 'a'), 'bottom a');
        writeFileSync(join(bottom, 'b'), 'bottom b');
        const { target, result } = await mounted(method, { lowers: [top, bottom], upper, work });
        expect(result.method).to.equal(method);
        expect(readFileSync(join(target, 'a'), 'utf8')).to.equal('top a');
        writeFileSync(join(target, 'b'), 'changed b');
        writeFileSync(join(target, 'c'), 'new c');
        expect(readFileSync(join(upper, 'b'), 'utf8')).to.equal('changed b');
        expect(readFileSync(join(upper, 'c'), 'utf8')).to.equal('new c');
        expect(readFileSync(join(bottom, 'b'), 'utf8')).to.equal('bottom b');
        expect(readdirSync(upper).sort()).to.deep.equal(['b', 'c']);
      });

      it('takes paths with the characters legacy options must escape (: , \\)', async function () {
        const [lower, upper, work] = dirs('low:er,1\\x', 'up,per:\\', 'wo:rk') as [string, string, string];
        writeFileSync(join(lower, 'f'), 'odd');
        const { target } = await mounted(method, { lowers: [lower], upper, work });
        expect(readFileSync(join(target, 'f'), 'utf8')).to.equal('odd');
        writeFileSync(join(target, 'g'), 'up');
        expect(readFileSync(join(upper, 'g'), 'utf8')).to.equal('up');
      });

      it('takes lower paths longer than fsconfig strings (255 bytes)', async function () {
        const [lower, other] = dirs(`${'d'.repeat(200)}/${'e'.repeat(200)}`, 'other') as [string, string];
        writeFileSync(join(lower, 'f'), 'deep');
        const { target, result } = await mounted(method, { lowers: [lower, other] });
        // lowerdir+ passes it by fd; legacy still fits a page with the full path.
        expect(result).to.deep.equal({ method, layersByFd: method === 'lowerdir+' ? 1 : 0 });
        expect(readFileSync(join(target, 'f'), 'utf8')).to.equal('deep');
      });

      it('mounts with each option: metacopy+redirect_dir, index, volatile, userxattr, extras', async function () {
        const cases: Array<[string, Partial<OverlayOptions>, string[]]> = [
          ['meta', { metacopy: true, redirectDir: 'on' }, ['metacopy=on', 'redirect_dir=on']],
          ['noindex', { index: false }, []],
          ['index', { index: true, redirectDir: 'nofollow' }, ['index=on']],
          ['volatile', { volatile: true }, []],
          ['userxattr', { userxattr: true }, ['userxattr']],
          ['extra', { extraOptions: { uuid: 'off', default_permissions: true } }, ['uuid=off', 'default_permissions']],
        ];
        for (const [name, options, shown] of cases) {
          const [lower, upper, work] = dirs(`${name}/lower/d`, `${name}/upper`, `${name}/work`) as [string, string, string];
          writeFileSync(join(lower, 'data'), Buffer.alloc(65536, 1));
          const { target } = await mounted(method, { lowers: [join(lower, '..')], upper, work, ...options }, name);
          const opts = superOptions(target);
          expect(opts, name).to.include.members(shown);
          if (name === 'noindex') expect(opts).to.not.include('index=on');
          // Shown as "fsync=volatile" by newer kernels.
          if (name === 'volatile') expect(opts.some((o) => /^(fsync=)?volatile$/.test(o)), name).to.equal(true);
          chmodSync(join(target, 'd', 'data'), 0o600);
          const copied = statSync(join(upper, 'd', 'data'));
          expect(copied.size, name).to.equal(65536);
          // metacopy copies up metadata only: the upper file has no data blocks.
          expect(copied.blocks === 0, name).to.equal(name === 'meta');
          if (name === 'meta') {
            // Renaming a lower directory needs redirect_dir (EXDEV without it).
            renameSync(join(target, 'd'), join(target, 'moved'));
            expect(readFileSync(join(target, 'moved', 'data'))).to.have.length(65536);
          }
        }
      });

      it('rejects a missing lower, and a bad option value with the kernel log (new API)', async function () {
        const [target] = dirs('t') as [string];
        const missing = join(base, 'missing');
        const [lower, other] = dirs('lower', 'other') as [string, string];
        const error = await mountOverlay(target, { lowers: [missing, lower], method }).catch((e: unknown) => e);
        expect(error).to.include({ code: 'ENOENT' });
        const bad = await mountOverlay(target, { lowers: [lower, other], extraOptions: { xino: 'sideways' }, method })
          .catch((e: unknown) => e);
        expect(bad).to.include({ code: 'EINVAL' });
        if (method === 'lowerdir+') {
          expect(error).to.include({ syscall: 'fsconfig', path: 'lowerdir+', dest: missing });
          expect(bad).to.include({ syscall: 'fsconfig', path: 'xino', kernelLog: "e overlay: Bad value for 'xino'" });
          expect((bad as Error).message).to.match(/Bad value for 'xino'$/);
        } else {
          expect(error).to.include({ syscall: 'mount', path: 'overlay', dest: target });
        }
        expect(mountsBelow(target)).to.deep.equal([]);
      });
    });
  }

  it("'auto' picks lowerdir+ where the kernel has it, else legacy", async function () {
    const { result } = await mounted('auto', { lowers: dirs('a', 'b') });
    expect(result.method).to.equal(probeOverlayFeatures().lowerdirPlus ? 'lowerdir+' : 'legacy');
  });

  it('fails with E2BIG when even fd numbers do not fit a page (legacy)', async function () {
    const lowers = dirs(...Array.from({ length: 500 }, (_, i) => `l/${i}`));
    // Long upper and work paths use up most of the page on their own.
    const long = `${'u'.repeat(250)}/`.repeat(8);
    const [upper, work] = dirs(`${long}upper`, `${long}work`) as [string, string];
    const [target] = dirs('t') as [string];
    const error = await mountOverlay(target, { lowers, upper, work, method: 'legacy' }).catch((e: unknown) => e);
    expect(error).to.include({ code: 'E2BIG', syscall: 'mount', dest: target });
    // lowerdir+ has no such limit.
    if (!methodWorks('lowerdir+')) return;
    await mountOverlay(target, { lowers, upper, work, method: 'lowerdir+' });
    cleanups.defer(() => unmount(target, ['detach']));
  });

  it('closes every fd it opens, on success and on failure', async function () {
    const lowers = dirs(...Array.from({ length: 300 }, (_, i) => `l/${i}`));
    const [upper, work] = dirs('upper', 'work') as [string, string];
    const [target] = dirs('t') as [string];
    const long = `${'u'.repeat(250)}/`.repeat(8);
    const batch = async (): Promise<void> => {
      for (const method of methods.filter(methodWorks)) {
        await mountOverlay(target, { lowers, method });
        await unmount(target);
        await mountOverlay(target, { lowers: [...lowers, join(base, 'missing')], method }).catch(() => {});
        await mountOverlay(target, { lowers, extraOptions: { xino: 'bad' }, method }).catch(() => {});
        await mountOverlay(join(base, 'no-target'), { lowers, upper, work, method }).catch(() => {});
        await mountOverlay(target, { lowers, upper: `${long}u`, work: `${long}w`, method }).catch(() => {});
      }
      await mountOverlay(target, { lowers: [], method: 'legacy' }).catch(() => {});
    };
    await batch();
    const before = fdCount();
    for (let i = 0; i < 3; i++) await batch();
    expect(fdCount()).to.equal(before);
    expect(mountsBelow(target)).to.deep.equal([]);
  });

  describe('argument validation', function () {
    it('rejects bad overlay specs with TypeErrors', async function () {
      const lower = scratchDir(cleanups);
      const target = scratchDir(cleanups);
      const bad: Array<[string, OverlayOptions]> = [
        ['no lowers', { lowers: [] }],
        ['501 lowers', { lowers: Array.from({ length: 501 }, () => lower) }],
        ['one lower without upper', { lowers: [lower] }],
        ['upper without work', { lowers: [lower], upper: lower }],
        ['work without upper', { lowers: [lower], work: lower }],
        ['empty lower', { lowers: [''] }],
        ['NUL in lower', { lowers: ['/a\0b'] }],
        ['lowers not an array', { lowers: lower as unknown as string[] }],
        ['option with a comma', { lowers: [lower, lower], extraOptions: { xino: 'on,off' } }],
        ['layer option in extras', { lowers: [lower, lower], extraOptions: { upperdir: '/x' } }],
        ['option name with =', { lowers: [lower, lower], extraOptions: { 'a=b': 'c' } }],
        ['option given twice', { lowers: [lower, lower], index: true, extraOptions: { index: 'off' } }],
        ['option value a number', { lowers: [lower, lower], extraOptions: { xino: 1 as unknown as string } }],
        ['unknown method', { lowers: [lower, lower], method: 'magic' as OverlayMethod }],
      ];
      for (const [what, options] of bad) {
        const error = await mountOverlay(target, options).catch((e: unknown) => e);
        expect(error, what).to.be.instanceOf(TypeError);
      }
      expect(mountsBelow(target)).to.deep.equal([]);
    });

    it('the binding requires absolute paths and checks every argument', function () {
      const bad: Array<[string, () => unknown]> = [
        ['relative lower', () => native.mountOverlay('/t', ['rel'], null, null, {}, 'auto')],
        ['relative upper', () => native.mountOverlay('/t', ['/l'], 'u', '/w', {}, 'auto')],
        ['non-string target', () => native.mountOverlay(1 as unknown as string, ['/l'], null, null, {}, 'auto')],
        ['options not an object', () => native.mountOverlay('/t', ['/l'], null, null, [] as unknown as Record<string, string>, 'auto')],
        ['flag option false', () => native.mountOverlay('/t', ['/l'], null, null, { volatile: false as unknown as true }, 'auto')],
        ['missing arguments', () => (native.mountOverlay as unknown as () => unknown)()],
      ];
      for (const [what, call] of bad) expect(call, what).to.throw(TypeError);
    });
  });
});
