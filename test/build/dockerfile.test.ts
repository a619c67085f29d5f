import { expect } from 'chai';

import { cleanPath, globRegex } from '../../lib/build/context.js';
import { DockerfileError, parseDockerfile, parsePairs, splitWords, substitute } from '../../lib/build/dockerfile.js';

describe('Dockerfile parser', function () {
  it('reads instructions, flags, exec and shell forms, comments and continuations', function () {
    const { instructions, escape } = parseDockerfile(
      [
        '# a comment',
        'from base',
        '',
        'COPY --chown=app:app a.txt \\',
        '  # a comment inside the continuation',
        '  /dst/',
        'RUN ["echo", "hi"]',
        'RUN echo [not json',
        'CMD python /app/app.py',
      ].join('\n'),
    );
    expect(escape).to.equal('\\');
    expect(instructions.map((i) => i.keyword)).to.deep.equal(['FROM', 'COPY', 'RUN', 'RUN', 'CMD']);
    expect(instructions[0]!.args).to.equal('base');
    expect(instructions[1]!.flags).to.deep.equal({ chown: ['app:app'] });
    expect(instructions[1]!.args).to.equal('a.txt   /dst/');
    expect(instructions[1]!.line).to.equal(4);
    expect(instructions[2]!.json).to.deep.equal(['echo', 'hi']);
    expect(instructions[3]!.json).to.equal(undefined);
    expect(instructions[3]!.args).to.equal('echo [not json');
  });

  it('honours the escape directive', function () {
    const { instructions, escape } = parseDockerfile('# escape=`\nFROM base\nRUN echo a `\n  b\\c\n');
    expect(escape).to.equal('`');
    expect(instructions[1]!.args).to.equal('echo a   b\\c');
  });

  it('refuses what it cannot build, naming the line', function () {
    expect(() => parseDockerfile('RUN true')).to.throw(DockerfileError, /first instruction must be FROM/);
    expect(() => parseDockerfile('FROM a\nHEALTHCHECK NONE')).to.throw(DockerfileError, /line 2: unknown or unsupported instruction "HEALTHCHECK"/);
    expect(() => parseDockerfile('FROM a\nFROM b')).to.throw(DockerfileError, /multi-stage/);
    expect(() => parseDockerfile('# only a comment\n')).to.throw(DockerfileError, /no instructions/);
    expect(() => parseDockerfile('ARG V=1\nFROM base:$V')).to.not.throw();
  });

  it('substitutes variables as docker does', function () {
    const vars = new Map([['A', 'one'], ['EMPTY', '']]);
    expect(substitute('$A ${A} ${B:-two} ${EMPTY:-three} ${A:+set} ${B:+unset}x \\$A $', vars)).to.equal('one one two three set x $A $');
    expect(() => substitute('${A', vars)).to.throw(DockerfileError, /missing }/);
  });

  it('splits words and key=value pairs with quotes', function () {
    expect(splitWords(`a "b c" 'd e' f\\ g`)).to.deep.equal(['a', 'b c', 'd e', 'f g']);
    expect(parsePairs('A=1 B="two words" C=', 'ENV')).to.deep.equal([['A', '1'], ['B', 'two words'], ['C', '']]);
    expect(parsePairs('NAME the old form', 'ENV')).to.deep.equal([['NAME', 'the old form']]);
    expect(() => parsePairs('NAME', 'ENV')).to.throw(DockerfileError, /needs a value/);
  });

  it('matches globs and cleans paths as docker does', function () {
    expect(globRegex('*.txt').test('a.txt')).to.equal(true);
    expect(globRegex('*.txt').test('dir/a.txt')).to.equal(false);
    expect(globRegex('**/*.txt').test('dir/sub/a.txt')).to.equal(true);
    expect(globRegex('**/*.txt').test('a.txt')).to.equal(true);
    expect(globRegex('file?.[ab]').test('file1.b')).to.equal(true);
    expect(globRegex('file?.[!ab]').test('file1.b')).to.equal(false);
    expect(cleanPath('./a/../b/')).to.equal('b');
    expect(cleanPath('/')).to.equal('.');
  });
});
