// The pure parts of `npm run bench`: argument parsing, figures and ratios,
// and what the Markdown tables and the SVG chart show. Nothing is timed here.
import { expect } from 'chai';

import { parseOptions } from '../../bench/options.js';
import { formatBytes, renderMarkdown, renderSvg, type Results } from '../../bench/report.js';
import { row, stats, type Row } from '../../bench/support.js';

const names = ['copy-up', 'copy-up-devicemapper', 'commit'];

describe('bench harness', function () {
  describe('options', function () {
    it('runs every case, in registry order, when --only is not given', function () {
      expect(parseOptions([], names)).to.deep.equal({ selected: names, subset: false, list: false });
    });

    it('takes --only as a list, repeated or with =, in registry order', function () {
      expect(parseOptions(['--only', 'commit,copy-up'], names)).to.include({ subset: true }).and.to.have.deep.property('selected', ['copy-up', 'commit']);
      expect(parseOptions(['--only=commit', '--only', 'copy-up-devicemapper', '--runs', '2'], names)).to.deep.equal({
        selected: ['copy-up-devicemapper', 'commit'],
        subset: true,
        list: false,
        runs: 2,
      });
    });

    it('is no subset when --only names every case', function () {
      expect(parseOptions(['--only', names.join(',')], names).subset).to.equal(false);
    });

    it('refuses unknown cases, bad run counts and stray arguments, naming them', function () {
      expect(() => parseOptions(['--only', 'copy-up,nope'], names)).to.throw('no bench case named "nope": the cases are copy-up, copy-up-devicemapper, commit');
      expect(() => parseOptions(['--runs', '0'], names)).to.throw('--runs must be a whole number of at least 1, got "0"');
      expect(() => parseOptions(['--runs'], names)).to.throw('--runs needs a value');
      expect(() => parseOptions(['--only', ','], names)).to.throw('--only names no case');
      expect(() => parseOptions(['fast'], names)).to.throw('unknown argument "fast"');
    });
  });

  describe('figures', function () {
    it('takes the median, min and max of the runs', function () {
      expect(stats([5, 1, 3])).to.deep.equal({ median: 3, min: 1, max: 5, runs: 3 });
      expect(stats([4, 1, 3, 2])).to.deep.equal({ median: 2.5, min: 1, max: 4, runs: 4 });
    });

    it('gives a row its ratio to the baseline only when it has one', function () {
      const common = { case: 'c', section: 's', fs: 'ext4', subject: 'x', unit: 'ms' as const };
      expect(row({ ...common, value: stats([30]), baseline: 'b', base: stats([10]) }).ratio).to.equal(3);
      expect(row({ ...common, value: stats([30]) })).to.not.have.property('ratio');
    });

    it('formats sizes in binary units', function () {
      expect(formatBytes(512)).to.equal('512 B');
      expect(formatBytes(1536)).to.equal('1.50 KiB');
      expect(formatBytes(1024 ** 3)).to.equal('1.00 GiB');
      expect(formatBytes(-4096)).to.equal('-4.00 KiB');
    });
  });

  describe('report', function () {
    const rows: Row[] = [
      row({ case: 'copy-up', section: 'first write', fs: 'ext4', subject: 'overlay2', unit: 'ms', value: stats([900, 1000, 1100]), baseline: 'cp', base: stats([500]), bytesUsed: 2 ** 30 }),
      row({ case: 'copy-up', section: 'first write', fs: 'xfs', subject: 'overlay2', unit: 'ms', value: stats([2, 3, 4]), baseline: 'cp', base: stats([500]), bytesUsed: 4096 }),
      row({ case: 'copy-up', section: 'chmod', fs: 'xfs', subject: 'vfs', unit: 'ms', value: stats([0.05]) }),
      row({ case: 'container', section: 'disk', fs: 'ext4', subject: 'idle', unit: 'bytes', value: stats([8192]) }),
      row({ case: 'export', section: 'export', fs: 'ext4', subject: 'tar -c | cat', unit: 's', value: stats([1]) }),
    ];
    const machine = { date: '2026-01-01T00:00:00.000Z', kernel: '6.18', cpus: 2, cpuModel: 'cpu', memoryGiB: 4, node: '20', commit: 'abc1234' };

    it('makes a table per section with medians, ranges, ratios and disk used', function () {
      const markdown = renderMarkdown({ complete: true, cases: ['copy-up', 'container'], machine, rows });
      expect(markdown).to.include('Every case ran.');
      expect(markdown).to.include('## copy-up\n\n### first write\n');
      expect(markdown).to.include('| ext4 | overlay2 | 1000 ms | 900–1100 | cp | 500 ms | 2.00× | 1.00 GiB |');
      expect(markdown).to.include('| xfs | overlay2 | 3.00 ms | 2.00–4.00 | cp | 500 ms | 0.0060× | 4.00 KiB |');
      expect(markdown).to.include('| xfs | vfs | 0.0500 ms | 0.0500–0.0500 |  |  |  |\n');
      expect(markdown).to.include('| ext4 | idle | 8.00 KiB | 8.00 KiB–8.00 KiB |  |  |  |\n');
      expect(markdown, 'a pipe in a cell is escaped').to.include('| ext4 | tar -c \\| cat | 1.00 s |');
    });

    it('says so when the run was partial', function () {
      const partial: Results = { complete: false, cases: ['container'], machine, rows: rows.slice(3, 4) };
      expect(renderMarkdown(partial)).to.include('**Partial run**: only container; not a complete table.');
    });

    it('draws a bar per timed row, one panel per section, on a log scale', function () {
      const svg = renderSvg(rows, 'Copy-up');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).to.equal(true);
      expect(svg.trimEnd().endsWith('</svg>')).to.equal(true);
      expect(svg.match(/<rect [^>]*><title>/g)).to.have.length(3);
      expect(svg).to.include('first write (ms, log scale)');
      expect(svg).to.include('chmod (ms, log scale)');
      // decades from 0.01 ms to 10 s label the axis
      expect(svg).to.include('>0.0100</text>');
      expect(svg).to.include('>10000</text>');
    });
  });
});
