import { UsageError } from "../../../common/errors.ts";
import { checkArgv } from "../client/args.ts";
import { EXIT, fail } from "../client/index.ts";
import type { Command, CommandEntry, CommandIO, CommandOptions } from "../command.ts";

/**
 * `polymurctl completion bash|zsh|fish`: a shell completion script made from
 * polymurctl's own tables at the time it runs — the dispatcher's commands,
 * each command's option table (the one its `run` parses), the subcommands its
 * usage names and the values it checks — so the script cannot drift from the
 * program: a new command, subcommand or option is completed as soon as it exists.
 */

const usage = `usage: polymurctl completion bash
       polymurctl completion zsh
       polymurctl completion fish

Prints a completion script for the shell, made from polymurctl's own command and
option tables: commands, subcommands, each command's options, the values an option
takes where polymurctl checks them, and file names after the options that take a file.
  bash: polymurctl completion bash > /etc/bash_completion.d/polymurctl
        (or, for one user, add  source <(polymurctl completion bash)  to ~/.bashrc)
  zsh:  polymurctl completion zsh > "\${fpath[1]}/_polymurctl"
        (or  source <(polymurctl completion zsh)  in ~/.zshrc, after compinit)
  fish: polymurctl completion fish > ~/.config/fish/completions/polymurctl.fish

options:
  -h, --help   this help`;

const OPTIONS = { help: { type: "boolean", short: "h" } } as const;

/** The shells a script is made for. */
export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof SHELLS)[number];

/** What completion knows of one command, all of it read from the command itself. */
export interface CompletionSpec {
  readonly name: string;
  readonly summary: string;
  /** The second words of its usage lines (`polymurctl dest add …` → `add`). */
  readonly subcommands: readonly string[];
  /** Its option table, common options included. */
  readonly options: CommandOptions;
  /** The values of a string option, where the command checks them. */
  readonly choices: Readonly<Record<string, readonly string[]>>;
  /** The options whose value is a file name (usage: `--ca FILE`, `--rules relay.conf`). */
  readonly fileOptions: readonly string[];
}

/** Every word put in a script: nothing there needs quoting for any of the shells. */
const WORD = /^-{0,2}[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function checkedWord(w: string): string {
  if (!WORD.test(w)) throw new Error(`completion: "${w}" is not a plain word`);
  return w;
}

/** The subcommands a usage text names: `polymurctl <name> <sub>` at the start of a line. */
export function subcommandsOf(name: string, usageText: string): string[] {
  const found: string[] = [];
  const line = /^(?:usage:)?\s*polymurctl (\S+) ([a-z][a-z0-9-]*)(?=\s|$)/;
  for (const text of usageText.split("\n")) {
    const m = line.exec(text);
    if (m !== null && m[1] === name && !found.includes(m[2]!)) found.push(m[2]!);
  }
  return found;
}

/** The options a usage text shows with a file for a value (`--ca FILE`, `--rules relay.conf`). */
function fileOptionsOf(options: CommandOptions, usageText: string): string[] {
  return Object.keys(options).filter((o) =>
    new RegExp(`--${o.replace(/[.-]/g, "\\$&")}[ =](?:FILE\\b|[\\w.-]+\\.conf\\b)`).test(usageText),
  );
}

/** Loads every command and reads what completion needs from it. */
export async function completionSpecs(
  commands: Readonly<Record<string, CommandEntry>>,
): Promise<CompletionSpec[]> {
  return Promise.all(
    Object.entries(commands).map(async ([name, entry]) => {
      const c = await entry.load();
      return {
        name,
        summary: entry.summary,
        subcommands: subcommandsOf(name, c.usage),
        options: c.options,
        choices: c.choices ?? {},
        fileOptions: fileOptionsOf(c.options, c.usage),
      };
    }),
  );
}

/** `--name` and, where it has one, `-x`: the ways an option is written. */
function flags(options: CommandOptions, names: readonly string[]): string[] {
  return names.flatMap((n) => {
    const short = options[n]?.short;
    return short === undefined ? [`--${n}`] : [`-${short}`, `--${n}`];
  });
}

const stringOptions = (s: CompletionSpec): string[] =>
  Object.keys(s.options).filter((n) => s.options[n]!.type === "string");

/** The flags of the string options with known values, each with its value words. */
function valueCases(s: CompletionSpec): { flags: string[]; values: readonly string[] }[] {
  return Object.entries(s.choices)
    .filter(([n]) => s.options[n]?.type === "string")
    .map(([n, values]) => ({ flags: flags(s.options, [n]), values }));
}

const words = (ws: readonly string[]): string => ws.map(checkedWord).join(" ");

const header = (shell: Shell, install: string): string =>
  `# ${shell} completion for polymurctl, made by \`polymurctl completion ${shell}\` from its own
# command and option tables: make it again after an upgrade.
# Install: ${install}
`;

function bashScript(specs: readonly CompletionSpec[]): string {
  const perCommand = specs.map((s) => {
    const opts = words(flags(s.options, Object.keys(s.options)));
    const valopts = words(flags(s.options, stringOptions(s)));
    return `        ${checkedWord(s.name)}) subs="${words(s.subcommands)}"; opts="${opts}"; valopts="${valopts}" ;;`;
  });
  const valueLines = specs.flatMap((s) => [
    ...valueCases(s).map(
      (v) =>
        `        ${v.flags.map((f) => `"${s.name} ${f}"`).join("|")}) mapfile -t COMPREPLY < <(compgen -W "${words(v.values)}" -- "$cur"); return 0 ;;`,
    ),
    ...(s.fileOptions.length === 0
      ? []
      : [
          `        ${flags(s.options, s.fileOptions)
            .map((f) => `"${s.name} ${f}"`)
            .join(
              "|",
            )}) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;`,
        ]),
  ]);
  return `${header("bash", "polymurctl completion bash > /etc/bash_completion.d/polymurctl")}
_polymurctl() {
    local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" subs="" opts="" valopts="" sub="" w i
    (( COMP_CWORD > 0 )) && prev="\${COMP_WORDS[COMP_CWORD-1]}"
    # --option=value: bash splits the word at "=" (COMP_WORDBREAKS).
    [[ $cur == "=" ]] && cur=""
    [[ $prev == "=" ]] && (( COMP_CWORD > 1 )) && prev="\${COMP_WORDS[COMP_CWORD-2]}"
    COMPREPLY=()
    if (( COMP_CWORD <= 1 )); then
        case $cur in
            -*) mapfile -t COMPREPLY < <(compgen -W "--help --version" -- "$cur") ;;
            *) mapfile -t COMPREPLY < <(compgen -W "${words(specs.map((s) => s.name))}" -- "$cur") ;;
        esac
        return 0
    fi
    cmd="\${COMP_WORDS[1]}"
    case $cmd in
${perCommand.join("\n")}
        *) return 0 ;;
    esac
    case "$cmd $prev" in
${valueLines.join("\n")}
    esac
    # The value of an option: nothing to offer.
    [[ " $valopts " == *" $prev "* ]] && return 0
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
        return 0
    fi
    for (( i = 2; i < COMP_CWORD; i++ )); do
        w="\${COMP_WORDS[i]}"
        if [[ " $valopts " == *" $w "* ]]; then
            (( i++ ))
            [[ \${COMP_WORDS[i]} == "=" ]] && (( i++ ))
            continue
        fi
        [[ $w == -* || $w == "=" ]] && continue
        sub=$w
        break
    done
    [[ -z $sub ]] && mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
    return 0
}
complete -F _polymurctl polymurctl
`;
}

/** A `name:description` item for zsh's _describe, single-quoted. */
function zshItem(name: string, description: string): string {
  return `'${checkedWord(name)}:${description.replace(/\\/g, "\\\\").replace(/:/g, "\\:").replace(/'/g, "'\\''")}'`;
}

function zshScript(specs: readonly CompletionSpec[]): string {
  const perCommand = specs.map((s) => {
    const opts = words(flags(s.options, Object.keys(s.options)));
    const valopts = words(flags(s.options, stringOptions(s)));
    return `        ${checkedWord(s.name)}) subs=(${words(s.subcommands)}); opts=(${opts}); valopts=(${valopts}) ;;`;
  });
  const valueLines = specs.flatMap((s) => [
    ...valueCases(s).map(
      (v) =>
        `        ${v.flags.map((f) => `"${s.name} ${f}"`).join("|")}) compadd -- ${words(v.values)}; return ;;`,
    ),
    ...(s.fileOptions.length === 0
      ? []
      : [
          `        ${flags(s.options, s.fileOptions)
            .map((f) => `"${s.name} ${f}"`)
            .join("|")}) _files; return ;;`,
        ]),
  ]);
  return `#compdef polymurctl
${header("zsh", `polymurctl completion zsh > "\${fpath[1]}/_polymurctl"`)}
_polymurctl() {
    local cur=\${words[CURRENT]} prev=\${words[CURRENT-1]} cmd=\${words[2]} sub="" w i
    local -a subs opts valopts
    if (( CURRENT == 2 )); then
        if [[ $cur == -* ]]; then
            compadd -- --help --version
        else
            local -a cmds
            cmds=(
${specs.map((s) => `                ${zshItem(s.name, s.summary)}`).join("\n")}
            )
            _describe -t commands 'polymurctl command' cmds
        fi
        return
    fi
    case $cmd in
${perCommand.join("\n")}
        *) return 1 ;;
    esac
    # --option=value in one word
    if [[ $cur == --*=* ]]; then
        prev=\${cur%%=*}
        compset -P '*='
    fi
    case "$cmd $prev" in
${valueLines.join("\n")}
    esac
    (( \${valopts[(Ie)$prev]} )) && return 1
    if [[ $cur == -* ]]; then
        compadd -- $opts
        return
    fi
    for (( i = 3; i < CURRENT; i++ )); do
        w=\${words[i]}
        if (( \${valopts[(Ie)$w]} )); then
            (( i++ ))
            continue
        fi
        [[ $w == -* ]] && continue
        sub=$w
        break
    done
    [[ -z $sub ]] && (( $#subs )) && compadd -- $subs
}

if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
    _polymurctl "$@"
else
    compdef _polymurctl polymurctl
fi
`;
}

/** A fish single-quoted string. */
const fishQuote = (s: string): string => `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;

function fishScript(specs: readonly CompletionSpec[]): string {
  const lines: string[] = [
    "complete -c polymurctl -f",
    "complete -c polymurctl -n __fish_use_subcommand -s h -l help",
    "complete -c polymurctl -n __fish_use_subcommand -s V -l version",
  ];
  for (const s of specs) {
    const name = checkedWord(s.name);
    lines.push(
      `complete -c polymurctl -n __fish_use_subcommand -a ${name} -d ${fishQuote(s.summary)}`,
    );
    if (s.subcommands.length > 0) {
      const subs = words(s.subcommands);
      lines.push(
        `complete -c polymurctl -n '__polymurctl_command_is ${name}; and not __fish_seen_subcommand_from ${subs}' -a '${subs}'`,
      );
    }
    for (const [o, spec] of Object.entries(s.options)) {
      const short = spec.short === undefined ? "" : ` -s ${checkedWord(spec.short)}`;
      const values = s.choices[o];
      const value =
        spec.type !== "string"
          ? ""
          : s.fileOptions.includes(o)
            ? " -r -F"
            : values === undefined
              ? " -x"
              : ` -x -a '${words(values)}'`;
      lines.push(
        `complete -c polymurctl -n '__polymurctl_command_is ${name}'${short} -l ${checkedWord(o)}${value}`,
      );
    }
  }
  return `${header("fish", "polymurctl completion fish > ~/.config/fish/completions/polymurctl.fish")}
function __polymurctl_command_is
    set -l tokens (commandline -opc)
    test (count $tokens) -ge 2; and contains -- $tokens[2] $argv
end

${lines.join("\n")}
`;
}

/** The completion script for `shell`, from the commands' specs. */
export function completionScript(shell: Shell, specs: readonly CompletionSpec[]): string {
  switch (shell) {
    case "bash":
      return bashScript(specs);
    case "zsh":
      return zshScript(specs);
    case "fish":
      return fishScript(specs);
  }
}

/** The `completion` command over the dispatcher's table (which holds this command too). */
export function createCompletionCommand(commands: Readonly<Record<string, CommandEntry>>): Command {
  return {
    usage,
    options: OPTIONS,
    async run(argv: readonly string[], io: CommandIO): Promise<number> {
      try {
        const { argv: args } = checkArgv("polymurctl completion", argv, OPTIONS);
        if (args.includes("--help")) {
          io.stdout.write(`${usage}\n`);
          return EXIT.ok;
        }
        const shells = args.filter((a) => a !== "--");
        const shell = shells[0];
        if (shells.length !== 1 || !(SHELLS as readonly string[]).includes(shell!)) {
          throw new UsageError(
            shell === undefined
              ? `say which shell: ${SHELLS.join(", ")}`
              : shells.length > 1
                ? `one shell only; got ${shells.join(" ")}`
                : `no completion for "${shell}" (shells: ${SHELLS.join(", ")})`,
          );
        }
        io.stdout.write(completionScript(shell as Shell, await completionSpecs(commands)));
        return EXIT.ok;
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        return fail("completion", io, { exit: EXIT.usage, message: err.message }, false);
      }
    },
  };
}
