// The command line of `npm run bench`: which cases, how many runs.
export interface BenchOptions {
  /** Case names to run, in registry order; all of them when --only is not given. */
  selected: string[];
  /** Whether --only narrowed the run: its tables are then not the published ones. */
  subset: boolean;
  list: boolean;
  runs?: number;
}

export const usage = 'usage: npm run bench -- [--list] [--only NAME[,NAME...]] [--runs N]';

/** Parses the arguments against the registry's case names; throws naming what is wrong. */
export function parseOptions(argv: readonly string[], names: readonly string[]): BenchOptions {
  let only: string[] | undefined;
  let list = false;
  let runs: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new Error(`${flag} needs a value; ${usage}`);
      return v;
    };
    if (flag === '--list') list = true;
    else if (flag === '--only') only = [...(only ?? []), ...value().split(',').map((name) => name.trim()).filter(Boolean)];
    else if (flag === '--runs') {
      const text = value();
      runs = Number(text);
      if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number of at least 1, got "${text}"`);
    } else throw new Error(`unknown argument "${arg}"; ${usage}`);
  }
  const unknown = (only ?? []).filter((name) => !names.includes(name));
  if (unknown.length > 0) throw new Error(`no bench case named ${unknown.map((n) => `"${n}"`).join(', ')}: the cases are ${names.join(', ')}`);
  if (only !== undefined && only.length === 0) throw new Error(`--only names no case; ${usage}`);
  const selected = only === undefined ? [...names] : names.filter((name) => only.includes(name));
  return { selected, subset: only !== undefined && selected.length < names.length, list, ...(runs !== undefined && { runs }) };
}
