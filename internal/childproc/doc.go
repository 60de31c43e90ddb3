// Package childproc starts child processes that do not outlive the process
// that started them, for tests and load tools that run the real binaries
// (sc-server, sc-client, openssl, haproxy, …): when a test binary is
// killed — go test's -timeout panic, SIGKILL, a crash — before its cleanup
// runs, its servers must not keep running, reparented to PID 1, holding
// ports and memory.
//
// On Linux, [Start] gives each child a parent-death signal
// (SysProcAttr.Pdeathsig, SIGKILL unless the caller chose another), which
// the kernel sends when the parent dies. The kernel sends it when the
// *thread* that forked the child exits, not the process (prctl(2),
// PR_SET_PDEATHSIG; https://go.dev/issue/27505), and the Go runtime ends a
// thread whenever a goroutine locked to it with runtime.LockOSThread
// returns without unlocking. So every child is forked from one dedicated
// OS thread, locked by a goroutine that never returns: it lives exactly as
// long as the process. Elsewhere Start is exec.Cmd.Start.
//
// [Run], [Output] and [CombinedOutput] are exec.Cmd's methods of the same
// names, starting the command through [Start].
package childproc
