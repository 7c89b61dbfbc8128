package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/entrasync/entrasync/config"
)

var completionCmd = &command{name: "completion", args: "bash|zsh|fish", nargs: 1, bare: true,
	summary: "print a shell completion script: commands, subcommands and each command's flags"}

// completion reads the command table, which lists completionCmd: its run
// is set here to break the initialisation cycle.
func init() { completionCmd.run = completion }

func completion(e *env, inv *invocation) error {
	switch inv.args[0] {
	case "bash":
		writeBash(e.stdout)
	case "zsh":
		writeZsh(e.stdout)
	case "fish":
		writeFish(e.stdout)
	default:
		return usagef("no completion for %q; give bash, zsh or fish", inv.args[0])
	}
	return nil
}

// groups are the words that take a subcommand, in help's order.
func groups() []string {
	var out []string
	for _, c := range commands {
		if first, _, ok := strings.Cut(c.name, " "); ok && !slices.Contains(out, first) {
			out = append(out, first)
		}
	}
	return out
}

// flagNames lists a command's flags as "--name", its own before the settings.
func flagNames(c *command) []string {
	fs, _ := newFlagSet(c, &invocation{})
	var own, settings []string
	fs.VisitAll(func(f *flag.Flag) {
		if config.IsFlag(f.Name) {
			settings = append(settings, "--"+f.Name)
		} else {
			own = append(own, "--"+f.Name)
		}
	})
	return append(append(own, "--help"), settings...)
}

// The scripts find the command from the words typed so far that are not
// flags: the first, and the second after a group. A flag's value is such a
// word too, which is harmless: commands take their arguments after their
// name, and flags only complete after it.

func writeBash(w io.Writer) {
	fmt.Fprintf(w, `# bash completion for entrasync. Load it with
#   source <(entrasync completion bash)
# or save it as /etc/bash_completion.d/entrasync.
_entrasync() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	local -a words=()
	local i
	for ((i = 1; i < COMP_CWORD; i++)); do
		[[ ${COMP_WORDS[i]} == -* ]] || words+=("${COMP_WORDS[i]}")
	done
	if ((${#words[@]} == 0)); then
		COMPREPLY=($(compgen -W %q -- "$cur"))
		return
	fi
	local cmd=${words[0]}
	case $cmd in
	%s) cmd+=" ${words[1]-}" ;;
	esac
	local opts=""
	case $cmd in
`, strings.Join(topWords(), " "), strings.Join(groups(), "|"))
	for _, g := range groups() {
		fmt.Fprintf(w, "\t%q) opts=%q ;;\n", g+" ", strings.Join(subcommands(g), " "))
	}
	fmt.Fprintf(w, "\thelp) opts=%q ;;\n", strings.Join(topWords()[1:], " "))
	fmt.Fprintf(w, "\tcompletion) [[ $cur == -* ]] || opts=\"bash zsh fish\" ;;\n")
	fmt.Fprintln(w, "\tesac")
	fmt.Fprintln(w, "\tif [[ -z $opts && $cur == -* ]]; then\n\t\tcase $cmd in")
	for _, c := range commands {
		fmt.Fprintf(w, "\t\t%q) opts=%q ;;\n", c.name, strings.Join(flagNames(c), " "))
	}
	fmt.Fprint(w, `		esac
	fi
	if [[ -n $opts ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	fi
}
complete -o default -F _entrasync entrasync
`)
}

func writeZsh(w io.Writer) {
	fmt.Fprintf(w, `#compdef entrasync
# zsh completion for entrasync. Load it with
#   source <(entrasync completion zsh)
# or save it as _entrasync in a directory of $fpath.
_entrasync() {
	local -a typed
	typed=(${${words[2,CURRENT-1]}:#-*})
	if (( ${#typed} == 0 )); then
		compadd -- %s
		return
	fi
	local cmd=${typed[1]}
	case $cmd in
	%s) cmd="$cmd ${typed[2]}" ;;
	esac
	case $cmd in
`, strings.Join(topWords(), " "), strings.Join(groups(), "|"))
	for _, g := range groups() {
		fmt.Fprintf(w, "\t%q) compadd -- %s; return ;;\n", g+" ", strings.Join(subcommands(g), " "))
	}
	fmt.Fprintf(w, "\thelp) compadd -- %s; return ;;\n", strings.Join(topWords()[1:], " "))
	fmt.Fprintln(w, "\tcompletion) [[ $PREFIX == -* ]] || { compadd -- bash zsh fish; return }; ;;")
	fmt.Fprintln(w, "\tesac\n\tif [[ $PREFIX == -* ]]; then\n\t\tcase $cmd in")
	for _, c := range commands {
		fmt.Fprintf(w, "\t\t%q) compadd -- %s ;;\n", c.name, strings.Join(flagNames(c), " "))
	}
	fmt.Fprint(w, `		esac
	else
		_files
	fi
}
if [[ $funcstack[1] == _entrasync ]]; then
	_entrasync "$@"
else
	compdef _entrasync entrasync
fi
`)
}

func writeFish(w io.Writer) {
	fmt.Fprintln(w, "# fish completion for entrasync. Load it with\n#   entrasync completion fish | source\n"+
		"# or save it as ~/.config/fish/completions/entrasync.fish.")
	top := strings.Join(topWords(), " ")
	for _, c := range commands {
		first, _, grouped := strings.Cut(c.name, " ")
		if !grouped {
			fmt.Fprintf(w, "complete -c entrasync -n 'not __fish_seen_subcommand_from %s' -f -a %s -d %s\n", top, first, fishQuote(c.summary))
		}
	}
	for _, g := range groups() {
		fmt.Fprintf(w, "complete -c entrasync -n 'not __fish_seen_subcommand_from %s' -f -a %s -d %s\n", top, g, fishQuote(g+" commands"))
		subs := strings.Join(subcommands(g), " ")
		for _, sub := range subcommands(g) {
			fmt.Fprintf(w, "complete -c entrasync -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -f -a %s -d %s\n",
				g, subs, sub, fishQuote(find(g+" "+sub).summary))
		}
	}
	fmt.Fprintln(w, "complete -c entrasync -n '__fish_seen_subcommand_from completion' -f -a 'bash zsh fish'")
	fmt.Fprintf(w, "complete -c entrasync -n '__fish_seen_subcommand_from help' -f -a %s\n", fishQuote(strings.Join(topWords()[1:], " ")))
	for _, c := range commands {
		first, sub, grouped := strings.Cut(c.name, " ")
		cond := "__fish_seen_subcommand_from " + first
		if grouped {
			cond += "; and __fish_seen_subcommand_from " + sub
		}
		fs, _ := newFlagSet(c, &invocation{})
		fs.VisitAll(func(f *flag.Flag) {
			value, usage := flag.UnquoteUsage(f)
			if i := strings.Index(usage, " (env ENTRASYNC_"); i >= 0 {
				usage = usage[:i]
			}
			takes := ""
			if value != "" {
				takes = " -r"
			}
			fmt.Fprintf(w, "complete -c entrasync -n '%s' -l %s%s -d %s\n", cond, f.Name, takes, fishQuote(usage))
		})
	}
}

// fishQuote single-quotes s for fish, which escapes only \ and ' inside.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
