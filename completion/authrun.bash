# bash completion for authrun (installed as share/bash-completion/completions/authrun, loaded on demand).
# Subcommands and options are read from the program's own --help, so they follow the program.

# The options `authrun [SUBCOMMAND] --help` lists (the words that start its option lines).
_authrun_options() {
  "$1" ${2:+"$2"} --help 2>/dev/null | sed -n 's/^ \{1,\}\(-[^ ]*\).*/\1/p' | tr ',' '\n'
}

_authrun_subcommands() {
  "$1" --help 2>/dev/null | sed -n '/^Subcommands:/,$ s/^ \{1,\}\([a-z][a-z0-9-]*\) .*/\1/p'
}

_authrun() {
  local cur prev words cword
  if declare -F _init_completion >/dev/null; then
    _init_completion -n = || return
  else
    cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
  fi
  local prog=${words[0]} sub="" i
  for ((i = 1; i < cword; i++)); do
    case ${words[i]} in
      -*) ;;
      *) sub=${words[i]}; break ;;
    esac
  done
  if [[ -z $sub ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "$(_authrun_options "$prog")" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$(_authrun_subcommands "$prog")" -- "$cur"))
    fi
    return
  fi
  # exec: after "--" comes the command, then its words and ::: values (files), or :::: files.
  if [[ $sub == exec ]]; then
    for ((i = 2; i < cword; i++)); do
      if [[ ${words[i]} == -- ]]; then
        if ((cword == i + 1)); then
          COMPREPLY=($(compgen -c -- "$cur"))
        else
          COMPREPLY=($(compgen -f -- "$cur"))
          [[ $cur == :* ]] && COMPREPLY=($(compgen -W "::: ::::" -- "$cur"))
        fi
        return
      fi
    done
  fi
  case $prev in
    -o | --output | --resume | --joblog | --audit-log | --key-file | --remote-key-file | --summary-json)
      COMPREPLY=($(compgen -f -- "$cur"))
      return ;;
    --results)
      COMPREPLY=($(compgen -d -- "$cur"))
      return ;;
    --worker | --remote-worker | --launcher)
      COMPREPLY=($(compgen -c -- "$cur"))
      return ;;
    --mode)
      COMPREPLY=($(compgen -W "authenticated encrypted" -- "$cur"))
      return ;;
    --halt)
      COMPREPLY=($(compgen -W "never now,fail=1 soon,fail=1" -- "$cur"))
      return ;;
    -j | --jobs | --timeout | --retries | --window | --grace | --max-payload | --handshake-timeout | --silence-limit | \
      --max-tasks-per-worker | --max-in-flight-bytes | -S | --sshlogin)
      return ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_authrun_options "$prog" "$sub")" -- "$cur"))
  elif [[ $sub == run || $sub == keygen ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
} && complete -o filenames -F _authrun authrun
