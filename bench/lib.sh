# lib.sh - shell functions the bench scripts (and tests/chaos.sh) share;
# sourced, not run.

# free_port [u|t] [base]: a UDP (u, the default) or TCP (t) port nobody
# listens on, from base (20000) + this shell's pid modulo 20000 upwards.
free_port() {
	p=$(( ${2:-20000} + $$ % 20000 ))
	while [ -n "$(ss -Hln"${1:-u}" "sport = :$p" 2>/dev/null)" ]; do
		p=$((p + 1))
	done
	echo "$p"
}

# transport_args T: telem-supervisor's options for transport T, where
# shm/N means shm rings of N slots: "mqueue" -> -t mqueue, "shm/96" ->
# -t shm -s 96.
transport_args() {
	case $1 in
	*/*) echo "-t ${1%/*} -s ${1#*/}" ;;
	*) echo "-t $1" ;;
	esac
}
