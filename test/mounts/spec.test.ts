import { expect } from 'chai';
import { homedir } from 'node:os';

import { checkBindSource, sensitiveBindReason } from '../../lib/mounts/safety.js';
import {
  MountSpecError, parseMountFlag, parseRamSize, parseVolumeFlag, validateMountSet, validateVolumeName, type MountSpec,
} from '../../lib/mounts/spec.js';

function fails(fn: () => unknown, message: string | RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected an error').to.be.instanceOf(MountSpecError);
  if (typeof message === 'string') expect((caught as Error).message).to.equal(message);
  else expect((caught as Error).message).to.match(message);
}

describe('mount specifications', function () {
  describe('--mount', function () {
    it('parses a named volume with every volume option', function () {
      const spec = parseMountFlag('type=volume,source=data,target=/var/lib/data,ro,volume-nocopy,volume-driver=local,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-label=a=b');
      expect(spec).to.deep.equal({
        type: 'volume', source: 'data', target: '/var/lib/data', readOnly: true, noCopy: true,
        driverOptions: { type: 'tmpfs', device: 'tmpfs' }, labels: { a: 'b' },
      } satisfies MountSpec);
    });

    it('defaults to an anonymous volume and accepts the key synonyms', function () {
      expect(parseMountFlag('dst=/data')).to.deep.equal({
        type: 'volume', source: '', target: '/data', readOnly: false, noCopy: false, driverOptions: {}, labels: {},
      });
      expect(parseMountFlag('destination=/d/,src=v1').target).to.equal('/d');
      expect(parseMountFlag('TYPE=Volume,Target=/x').type).to.equal('volume');
    });

    it('reads booleans as Docker does', function () {
      for (const [text, value] of [['ro', true], ['ro=1', true], ['ro=true', true], ['readonly=0', false], ['readonly=FALSE', false]] as const) {
        expect(parseMountFlag(`target=/x,${text}`).readOnly, text).to.equal(value);
      }
      fails(() => parseMountFlag('target=/x,ro=yes'), /^invalid value for 'ro': invalid boolean value "yes"/);
    });

    it('parses a bind mount with its options and defaults', function () {
      expect(parseMountFlag('type=bind,src=/srv/data,dst=/data')).to.deep.equal({
        type: 'bind', source: '/srv/data', target: '/data', readOnly: false, propagation: 'rprivate', recursive: 'enabled', createSource: false,
      });
      const spec = parseMountFlag('type=bind,source=/srv,target=/srv,readonly,bind-recursive=readonly,bind-propagation=rprivate,bind-create-src');
      expect(spec).to.include({ readOnly: true, recursive: 'readonly', createSource: true });
      expect(parseMountFlag('type=bind,source=/a,target=/b,bind-propagation=rshared')).to.include({ propagation: 'rshared' });
      expect(parseMountFlag('type=bind,source=/a,target=/b,bind-recursive=disabled')).to.include({ recursive: 'disabled' });
      expect(parseMountFlag('type=bind,source=/a,target=/b,ro,bind-recursive=writable')).to.include({ recursive: 'writable' });
    });

    it('makes a relative source starting with "." absolute', function () {
      expect(parseMountFlag('type=bind,source=./sub,target=/x', { cwd: '/home/me' })).to.include({ source: '/home/me/sub' });
      expect(parseMountFlag('type=bind,source=.,target=/x', { cwd: '/home/me' })).to.include({ source: '/home/me' });
    });

    it('parses tmpfs size and mode', function () {
      expect(parseMountFlag('type=tmpfs,target=/tmp,tmpfs-size=64m,tmpfs-mode=1770')).to.deep.equal({
        type: 'tmpfs', target: '/tmp', readOnly: false, size: 64 * 1024 * 1024, mode: 0o1770,
      });
      expect(parseMountFlag('type=tmpfs,dst=/run')).to.deep.equal({ type: 'tmpfs', target: '/run', readOnly: false });
      fails(() => parseMountFlag('type=tmpfs,target=/t,tmpfs-mode=999'), /^invalid value for 'tmpfs-mode'/);
      fails(() => parseMountFlag('type=tmpfs,target=/t,tmpfs-size=lots'), "invalid size: 'lots'");
    });

    it('reads quoted CSV fields', function () {
      const spec = parseMountFlag('type=volume,target=/d,"volume-opt=o=size=1m,uid=1000"');
      expect(spec).to.have.nested.property('driverOptions.o', 'size=1m,uid=1000');
      fails(() => parseMountFlag('target=/d,"volume-opt=o'), /extraneous or missing "/);
    });

    const rejected: Array<[string, string | RegExp]> = [
      ['', 'invalid empty mount specification'],
      ['type=bind,source=/a,target=/b,foo=bar', "unknown option 'foo' in 'foo=bar'"],
      ['type=bind,source=/a,target', "invalid field 'target' must be a key=value pair"],
      ['type=bind,source=,target=/b', "invalid value for 'source': value is empty"],
      ['type=bind,source= /a,target=/b', "invalid value for 'source': value should not have whitespace"],
      ['type=bind,source=/a', 'invalid mount config for type "bind": field Target must not be empty'],
      ['type=bind,source=/a,target=b', `invalid mount config for type "bind": invalid mount path: 'b' mount path must be absolute`],
      ['type=bind,source=/a,target=/', `invalid mount config for type "bind": invalid specification: destination can't be '/'`],
      ['type=bind,target=/b', 'invalid mount config for type "bind": field Source must not be empty'],
      ['type=bind,source=rel,target=/b', `invalid mount config for type "bind": invalid mount path: 'rel' mount path must be absolute`],
      ['type=tmpfs,source=x,target=/b', 'invalid mount config for type "tmpfs": field Source must not be specified'],
      ['type=foo,target=/b', 'invalid mount config for type "foo": mount type unknown'],
      ['type=volume,target=/b,bind-propagation=shared', "cannot mix 'bind-*' options with mount type 'volume'"],
      ['type=bind,source=/a,target=/b,volume-nocopy', "cannot mix 'volume-*' options with mount type 'bind'"],
      ['type=volume,target=/b,tmpfs-size=1m', "cannot mix 'tmpfs-*' options with mount type 'volume'"],
      ['type=tmpfs,target=/b,volume-opt=a=b', "cannot mix 'volume-*' options with mount type 'tmpfs'"],
      ['type=bind,source=/a,target=/b,bind-propagation=weird', 'invalid propagation mode: weird'],
      ['type=bind,source=/a,target=/b,bind-recursive=maybe', /^invalid value for 'bind-recursive'/],
      ['type=bind,source=/a,target=/b,bind-recursive=readonly', "option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction"],
      ['type=bind,source=/a,target=/b,bind-recursive=writable', "option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction"],
      ['type=bind,source=/a,target=/b,ro,bind-recursive=readonly,bind-propagation=shared', "option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be specified in conjunction"],
      ['type=bind,source=/a,target=/b,bind-nonrecursive', 'bind-nonrecursive is deprecated, use bind-recursive=disabled instead'],
      ['type=bind,source=/a,src=/c,target=/b', "duplicate option 'src' in 'type=bind,source=/a,src=/c,target=/b'"],
      ['type=bind,type=volume,target=/b', /^duplicate option 'type'/],
      ['target=/b,ro,readonly=false', /^duplicate option 'readonly'/],
      ['type=volume,target=/b,volume-driver=nfs', 'volume driver "nfs" is not supported: only "local" is'],
      ['type=volume,target=/b,volume-opt=novalue', /^invalid value for 'volume-opt': "novalue" must be a key=value pair/],
      ['type=volume,source=a,target=/b', 'volume name is too short, names should be at least two alphanumeric characters'],
      ['type=volume,source=bad/name,target=/b', /^"bad\/name" includes invalid characters for a local volume name/],
      ['type=volume,target=/b,volume-subpath=x', "option 'volume-subpath' is not supported by strata"],
    ];
    for (const [value, message] of rejected) {
      it(`rejects ${JSON.stringify(value)}`, function () {
        fails(() => parseMountFlag(value), message);
      });
    }
  });

  describe('-v', function () {
    it('parses an anonymous volume, a named volume and a bind', function () {
      expect(parseVolumeFlag('/data')).to.deep.equal({ type: 'volume', source: '', target: '/data', readOnly: false, noCopy: false, driverOptions: {}, labels: {} });
      expect(parseVolumeFlag('cache:/var/cache:ro,nocopy')).to.deep.equal({
        type: 'volume', source: 'cache', target: '/var/cache', readOnly: true, noCopy: true, driverOptions: {}, labels: {},
      });
      expect(parseVolumeFlag('/srv:/srv:ro,rshared,Z')).to.deep.equal({
        type: 'bind', source: '/srv', target: '/srv', readOnly: true, propagation: 'rshared', recursive: 'enabled', createSource: true,
      });
      expect(parseVolumeFlag('/srv/:/srv/:rw,consistent')).to.include({ source: '/srv', target: '/srv', readOnly: false });
    });

    it('makes ./ and ~ sources absolute binds', function () {
      expect(parseVolumeFlag('./conf:/etc/app', { cwd: '/home/me' })).to.include({ type: 'bind', source: '/home/me/conf' });
      expect(parseVolumeFlag('~/x:/x')).to.include({ type: 'bind', source: `${homedir()}/x` });
    });

    const rejected: Array<[string, string | RegExp]> = [
      ['', 'invalid spec: : invalid empty volume spec'],
      ['a::/b', 'invalid spec: a::/b: empty section between colons'],
      ['/a:', 'invalid spec: /a:: empty section between colons'],
      ['/a:/b:ro:x', 'invalid spec: /a:/b:ro:x: too many colons'],
      ['/foo:rw', "invalid volume specification: '/foo:rw'"],
      ['/a:/b:rx', 'invalid mode: rx'],
      ['/a:/b:ro,rw', 'invalid mode: ro,rw'],
      ['/a:/b:shared,slave', 'invalid mode: shared,slave'],
      ['/a:/b:nocopy', 'invalid mount config for type "bind": field VolumeOptions must not be specified'],
      ['vol:/b:shared', 'invalid mount config for type "volume": field BindOptions must not be specified'],
      ['relative', `invalid mount config for type "volume": invalid mount path: 'relative' mount path must be absolute`],
      ['vol:rel', `invalid mount config for type "volume": invalid mount path: 'rel' mount path must be absolute`],
      ['/a:/', `invalid mount config for type "bind": invalid specification: destination can't be '/'`],
      ['x:/b', 'volume name is too short, names should be at least two alphanumeric characters'],
      ['-bad:/b', /^"-bad" includes invalid characters for a local volume name, only "\[a-zA-Z0-9\]\[a-zA-Z0-9_.-\]" are allowed. If you intended to pass a host directory, use absolute path$/],
    ];
    for (const [value, message] of rejected) {
      it(`rejects ${JSON.stringify(value)}`, function () {
        fails(() => parseVolumeFlag(value), message);
      });
    }
  });

  it('validates volume names', function () {
    validateVolumeName('ab');
    validateVolumeName('my_vol.1-x');
    fails(() => validateVolumeName('_ab'), /includes invalid characters/);
    fails(() => validateVolumeName('a'), /too short/);
  });

  it('parses RAM sizes as docker units.RAMInBytes', function () {
    expect(parseRamSize('512')).to.equal(512);
    expect(parseRamSize('64m')).to.equal(64 * 1024 ** 2);
    expect(parseRamSize('1.5g')).to.equal(1.5 * 1024 ** 3);
    expect(parseRamSize('10KiB')).to.equal(10240);
    expect(parseRamSize('2 MB')).to.equal(2 * 1024 ** 2);
    fails(() => parseRamSize('-1m'), "invalid size: '-1m'");
  });

  it('rejects two mounts on one target', function () {
    fails(() => validateMountSet([parseVolumeFlag('/data'), parseMountFlag('type=tmpfs,target=/data/')]), 'Duplicate mount point: /data');
    validateMountSet([parseVolumeFlag('/data'), parseVolumeFlag('/data2')]);
  });

  describe('sensitive bind sources', function () {
    const root = '/var/lib/stratafs-test-root';
    for (const path of ['/', '/etc', '/etc/', '/proc', '/proc/1', '/sys/kernel', '/dev', '/var/run/docker.sock', '/run/containerd/containerd.sock', '/run', '/var/lib', root, `${root}/volumes`]) {
      it(`refuses ${path}`, function () {
        expect(sensitiveBindReason(path, root), path).to.be.a('string');
        fails(() => checkBindSource(path, root, false), /^refusing to bind-mount .*--allow-sensitive-binds\)$/);
        checkBindSource(path, root, true);
      });
    }
    it('allows ordinary paths', function () {
      for (const path of ['/srv/data', '/home/user', '/etc-not', '/var/lib/stratafs-test-root2']) expect(sensitiveBindReason(path, root), path).to.equal(undefined);
    });
  });
});
