
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'cacheback' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'cacheback'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'cacheback' {
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Print a command''s cached output, refreshing it in the background when stale')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cacheback;run' {
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Required: serve the entry without refreshing while younger than this (e.g. 900, 90s, 15m, 1h, 7d)')
            [CompletionResult]::new('--max-age', '--max-age', [CompletionResultType]::ParameterName, 'Treat an entry older than this as missing: never serve it, run the command [default: never]')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Kill the command (its whole process group) after this long; counts as a failure, exit 124 [default: none when run in the foreground, 10m for background refreshes]')
            [CompletionResult]::new('--placeholder', '--placeholder', [CompletionResultType]::ParameterName, 'Text printed on a miss with --no-wait [default: nothing]')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Human name for the entry, for `stats`, `show` and `invalidate` (not part of the key)')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Key on the value of environment variable NAME (repeatable; stored only as a hash)')
            [CompletionResult]::new('--modtime', '--modtime', [CompletionResultType]::ParameterName, 'Key on the modification time of FILE (repeatable), so editing it starts a new entry')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'Key on a namespace, to keep otherwise identical commands apart')
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Cache directory [default: $CACHEBACK_DIR, else $XDG_CACHE_HOME/cacheback]')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'On a miss, print the --placeholder at once and run the command in the background')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Run the command now, store and print its result, whatever the cache holds')
            [CompletionResult]::new('--cache-failures', '--cache-failures', [CompletionResultType]::ParameterName, 'Store results that exit non-zero too (by default only successes are stored)')
            [CompletionResult]::new('--cwd', '--cwd', [CompletionResultType]::ParameterName, 'Key on the working directory: each directory gets its own entry')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cacheback;help' {
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Print a command''s cached output, refreshing it in the background when stale')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cacheback;help;run' {
            break
        }
        'cacheback;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
