# A POSIX sh script for bash and dash under hiber: every step runs
# pipelines (with bytes left waiting in a pipe while the reader sleeps),
# a `while read` loop at the end of a pipeline, subshells, command
# substitutions, a function, external commands and background jobs
# collected with `wait`. Its output is the same on every run: background
# jobs either write to a file of their own, read after `wait`, or are the
# only writer while the foreground waits for them.
# Usage: sh script.sh STEPS (in a scratch directory: it writes bg.<step>)

steps=${1:-12}

square() {
    expr "$1" \* "$1"
}

pick() {
    echo "alpha beta gamma delta" | tr ' ' '\n' | sed -n "$1p"
}

i=1
while [ "$i" -le "$steps" ]; do
    n=$(expr "$i" \* 3 + 5)
    echo "step $i begin"
    # seq's output waits in the pipe while the middle stage sleeps (the
    # test checkpoints right after a "begin" line: mostly in this sleep)
    seq 1 "$n" | { sleep 0.1; sort -rn; } |
        awk -v s="$i" 'NR <= 3 { printf "step %d top %d\n", s, $1 }
                       { t += $1 }
                       END { printf "step %d sum %d\n", s, t }'
    seq 1 4 | tr '1234' 'abcd' | while read -r w; do
        echo "step $i word $w$i"
    done
    (
        x=$(square "$i")
        cd / && echo "step $i subshell $x $(pwd)"
    )
    # a background job writing to its own file while the foreground works
    (
        sleep 0.05
        seq "$i" | wc -l | sed "s/^/step $i bg lines /" >"bg.$i"
    ) &
    word=$(pick "$(expr "$i" % 4 + 1)")
    wait
    cat "bg.$i"
    echo "step $i pick $word"
    # a background job writing to stdout while the foreground waits for it
    (
        sleep 0.05
        echo "step $i bg2 $(expr "$i" + 100)"
    ) &
    wait $!
    k=0
    for c in a b c; do
        k=$((k + $(printf '%s' "$c$c" | wc -c)))
    done
    echo "step $i end $k $(printf '%s\n' x y z | cat | sort -r | paste -sd, -)"
    i=$(expr "$i" + 1)
done
echo "done $steps"
