/**
 * Just enough of the Dockerfile and .dockerignore formats to check and replay this project's
 * Dockerfile without a Docker engine: instructions with line continuations and comments,
 * stages, the exec (JSON) and shell forms, COPY flags, ENV pairs, HEALTHCHECK options, and
 * .dockerignore patterns (globs, `**`, `!` exceptions, a pattern matching a parent directory).
 * Anything it does not understand throws, so a Dockerfile it cannot replay faithfully fails the
 * test instead of being half-simulated.
 */

export interface Instruction {
  keyword: string;
  /** The arguments, continuation lines joined. */
  args: string;
  /** 1-based line of the keyword. */
  line: number;
}

export interface Stage {
  image: string;
  name: string | null;
  instructions: Instruction[];
}

/** The stages of a Dockerfile, in order. Instructions before the first FROM (ARG) are refused. */
export function parseDockerfile(text: string): Stage[] {
  const lines = text.split('\n');
  const instructions: Instruction[] = [];
  let current: Instruction | null = null;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].replace(/\r$/, '');
    const trimmed = raw.trim();
    // Comment lines are dropped, also between continuation lines (as Docker does).
    if (trimmed.startsWith('#')) continue;
    if (current === null) {
      if (trimmed === '') continue;
      const m = /^([A-Za-z]+)(?:\s+(.*))?$/.exec(trimmed);
      if (!m) throw new Error(`Dockerfile line ${i + 1}: not an instruction: ${trimmed}`);
      current = { keyword: m[1].toUpperCase(), args: '', line: i + 1 };
      const rest = m[2] ?? '';
      if (rest.endsWith('\\')) {
        current.args = rest.slice(0, -1).trim();
      } else {
        current.args = rest.trim();
        instructions.push(current);
        current = null;
      }
    } else {
      if (trimmed === '') continue;
      const cont = trimmed.endsWith('\\');
      const part = cont ? trimmed.slice(0, -1).trim() : trimmed;
      current.args = `${current.args} ${part}`.trim();
      if (!cont) {
        instructions.push(current);
        current = null;
      }
    }
  }
  if (current) throw new Error(`Dockerfile line ${current.line}: continuation never ends`);

  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`Dockerfile line ${ins.line}: cannot read FROM ${ins.args}`);
      stages.push({ image: m[1], name: m[2] ?? null, instructions: [] });
    } else {
      if (stages.length === 0) throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} before the first FROM`);
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return stages;
}

export type CommandForm = { exec: string[] } | { shell: string };

/** The exec form (a JSON array of strings) or the shell form of RUN, CMD, ENTRYPOINT. */
export function commandForm(args: string): CommandForm {
  if (args.startsWith('[')) {
    const v: unknown = JSON.parse(args);
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new Error(`not a JSON array of strings: ${args}`);
    return { exec: v as string[] };
  }
  return { shell: args };
}

/** Splits on whitespace outside quotes; quotes are removed, backslash escapes the next character. */
export function splitWords(s: string): string[] {
  const out: string[] = [];
  let word = '';
  let inWord = false;
  let quote: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < s.length) word += s[++i];
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      word += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unterminated quote in: ${s}`);
  if (inWord) out.push(word);
  return out;
}

export interface Copy {
  from: string | null;
  flags: Record<string, string>;
  sources: string[];
  dest: string;
}

export function parseCopy(args: string): Copy {
  const words = args.trimStart().startsWith('[') ? (commandForm(args) as { exec: string[] }).exec : splitWords(args);
  const flags: Record<string, string> = {};
  while (words.length > 0 && words[0].startsWith('--')) {
    const w = words.shift()!;
    const eq = w.indexOf('=');
    if (eq < 0) throw new Error(`COPY flag without a value: ${w}`);
    flags[w.slice(2, eq)] = w.slice(eq + 1);
  }
  if (words.length < 2) throw new Error(`COPY needs a source and a destination: ${args}`);
  const dest = words.pop()!;
  return { from: flags.from ?? null, flags, sources: words, dest };
}

/** ENV KEY=VALUE ... (or the legacy ENV KEY VALUE). */
export function parseEnv(args: string): Record<string, string> {
  const words = splitWords(args);
  if (words.length > 0 && !words[0].includes('=')) return { [words[0]]: words.slice(1).join(' ') };
  const out: Record<string, string> = {};
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`ENV: "${w}" is not KEY=VALUE`);
    out[w.slice(0, eq)] = w.slice(eq + 1);
  }
  return out;
}

export interface Healthcheck {
  options: Record<string, string>;
  cmd: CommandForm;
}

/** HEALTHCHECK [--opt=value ...] CMD command; null for HEALTHCHECK NONE. */
export function parseHealthcheck(args: string): Healthcheck | null {
  if (args.trim().toUpperCase() === 'NONE') return null;
  const options: Record<string, string> = {};
  let rest = args.trim();
  for (;;) {
    const m = /^--([a-z-]+)=(\S+)\s+/.exec(rest);
    if (!m) break;
    options[m[1]] = m[2];
    rest = rest.slice(m[0].length);
  }
  const m = /^CMD\s+(.*)$/i.exec(rest);
  if (!m) throw new Error(`HEALTHCHECK without CMD: ${args}`);
  return { options, cmd: commandForm(m[1].trim()) };
}

/**
 * A .dockerignore as a predicate: true when the path (relative, '/'-separated) is left out of
 * the build context. The last pattern that matches the path or one of its parent directories
 * decides; `!` patterns put paths back.
 */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const exception = l.startsWith('!');
      const pattern = (exception ? l.slice(1) : l).trim().replace(/^\/+/, '').replace(/\/+$/, '').replace(/^\.\//, '');
      return { exception, re: globToRegExp(pattern) };
    });
  return (path: string): boolean => {
    const parts = path.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const r of rules) {
      if (prefixes.some((p) => r.re.test(p))) excluded = !r.exception;
    }
    return excluded;
  };
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      // `**/` matches any number of directories, `**` at the end anything.
      if (glob[i + 2] === '/') {
        re += '(?:.*/)?';
        i += 2;
      } else {
        re += '.*';
        i += 1;
      }
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}
