// The Dockerfile grammar the builder understands: instructions with their
// flags, shell and JSON (exec) forms, line continuations, comments, the
// escape directive, and $VAR / ${VAR:-default} / ${VAR:+alt} substitution.

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY... */
  keyword: string;
  /** Leading --name=value flags (COPY --chown=..., RUN --mount=...). */
  flags: Record<string, string[]>;
  /** The rest of the line, continuations joined, flags removed. */
  args: string;
  /** The arguments as a JSON string array, when written in that (exec) form. */
  json?: string[];
  /** The instruction as written, continuations joined (for the build output). */
  original: string;
  /** 1-based line where the instruction starts. */
  line: number;
}

export class DockerfileError extends Error {
  readonly code = 'ERR_DOCKERFILE';
}

const KEYWORDS = new Set(['FROM', 'RUN', 'COPY', 'ADD', 'ENV', 'ARG', 'WORKDIR', 'USER', 'LABEL', 'ENTRYPOINT', 'CMD', 'EXPOSE']);

export interface Dockerfile {
  /** The escape character: \\ unless the escape directive says ` (Windows style). */
  escape: string;
  instructions: Instruction[];
}

/** Parses a Dockerfile's text into its instructions. */
export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split(/\r?\n/);
  let escape = '\\';
  // Parser directives: only in leading comment lines, before anything else.
  for (const line of lines) {
    const directive = /^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(line);
    if (!directive) break;
    if (directive[1]!.toLowerCase() === 'escape') {
      if (directive[2] !== '\\' && directive[2] !== '`') throw new DockerfileError(`invalid escape directive "${directive[2]}": use \\ or \``);
      escape = directive[2]!;
    }
  }
  const instructions: Instruction[] = [];
  let pending: string | undefined;
  let start = 0;
  lines.forEach((raw, index) => {
    const trimmed = raw.trim();
    // Comments and blank lines are dropped, also inside a continued instruction.
    if (trimmed.startsWith('#') || (trimmed === '' && pending === undefined)) return;
    if (pending === undefined) start = index + 1;
    const stripped = raw.replace(/\s+$/, '');
    const continued = stripped.endsWith(escape) && !stripped.endsWith(escape + escape);
    const piece = continued ? stripped.slice(0, -1) : stripped;
    pending = pending === undefined ? piece.trimStart() : pending + piece;
    if (!continued) {
      if (pending.trim() !== '') instructions.push(parseInstruction(pending.trim(), start));
      pending = undefined;
    }
  });
  if (pending !== undefined && pending.trim() !== '') instructions.push(parseInstruction(pending.trim(), start));
  if (instructions.length === 0) throw new DockerfileError('the Dockerfile has no instructions');
  const first = instructions.find((i) => i.keyword !== 'ARG');
  if (first?.keyword !== 'FROM') throw new DockerfileError(`line ${first?.line ?? 1}: the first instruction must be FROM (after any ARG)`);
  if (instructions.filter((i) => i.keyword === 'FROM').length > 1) throw new DockerfileError('multi-stage builds (several FROM) are not supported');
  return { escape, instructions };
}

function parseInstruction(text: string, line: number): Instruction {
  const match = /^(\S+)\s*([\s\S]*)$/.exec(text)!;
  const keyword = match[1]!.toUpperCase();
  if (!KEYWORDS.has(keyword)) throw new DockerfileError(`line ${line}: unknown or unsupported instruction "${match[1]}"`);
  let rest = match[2]!;
  const flags: Record<string, string[]> = {};
  for (let flag = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest); flag; flag = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest)) {
    (flags[flag[1]!] ??= []).push(flag[2] ?? '');
    rest = rest.slice(flag[0].length);
  }
  const instruction: Instruction = { keyword, flags, args: rest.trim(), original: `${match[1]!.toUpperCase()} ${match[2]!}`.trim(), line };
  if (rest.trimStart().startsWith('[')) {
    try {
      const value: unknown = JSON.parse(rest);
      if (Array.isArray(value) && value.every((v) => typeof v === 'string')) instruction.json = value;
    } catch {
      // Not JSON: the shell form, as docker falls back to it.
    }
  }
  return instruction;
}

/**
 * Substitutes $VAR, ${VAR}, ${VAR:-default} and ${VAR:+alternative} from
 * `vars` as docker does for ENV, ARG, COPY, WORKDIR...; the escape character
 * keeps a $ literal. An unset variable is empty.
 */
export function substitute(text: string, vars: ReadonlyMap<string, string>, escape = '\\'): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === escape && text[i + 1] === '$') {
      out += '$';
      i++;
      continue;
    }
    if (c !== '$') {
      out += c;
      continue;
    }
    if (text[i + 1] === '{') {
      const end = text.indexOf('}', i + 2);
      if (end < 0) throw new DockerfileError(`missing } in "${text}"`);
      const body = text.slice(i + 2, end);
      const modifier = /^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([\s\S]*))?$/.exec(body);
      if (!modifier) throw new DockerfileError(`bad substitution \${${body}} in "${text}"`);
      const value = vars.get(modifier[1]!);
      if (modifier[2] === '-') out += value ? value : substitute(modifier[3]!, vars, escape);
      else if (modifier[2] === '+') out += value ? substitute(modifier[3]!, vars, escape) : '';
      else out += value ?? '';
      i = end;
      continue;
    }
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1));
    if (!name) {
      out += c;
      continue;
    }
    out += vars.get(name[0]) ?? '';
    i += name[0].length;
  }
  return out;
}

/**
 * Splits on unquoted whitespace, removing quotes and the escape character as
 * a shell would: the words of COPY, ENV key=value pairs, LABEL, EXPOSE.
 */
export function splitWords(text: string, escape = '\\'): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === escape && i + 1 < text.length && quote !== "'") {
      word += text[++i];
      inWord = true;
    } else if (quote) {
      if (c === quote) quote = undefined;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new DockerfileError(`unmatched ${quote} in "${text}"`);
  if (inWord) words.push(word);
  return words;
}

/**
 * key=value pairs (ENV, LABEL, ARG), or the old one-pair form "KEY value
 * with spaces" when the first word has no "=".
 */
export function parsePairs(text: string, keyword: string, escape = '\\'): Array<[string, string]> {
  const words = splitWords(text, escape);
  if (words.length === 0) throw new DockerfileError(`${keyword} needs at least one argument`);
  if (!words[0]!.includes('=')) {
    const [key, ...rest] = text.trim().split(/\s+/);
    if (rest.length === 0) throw new DockerfileError(`${keyword} ${key} needs a value`);
    return [[key!, splitWords(text.trim().slice(key!.length), escape).join(' ')]];
  }
  return words.map((word) => {
    const at = word.indexOf('=');
    if (at <= 0) throw new DockerfileError(`${keyword}: "${word}" is not key=value`);
    return [word.slice(0, at), word.slice(at + 1)];
  });
}
