package deploy

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/cli/servercmd"
	"go.yaml.in/yaml/v3"
)

// binPath is where the service files expect sc-server.
const binPath = "/usr/local/bin/sc-server"

// needTool returns the path of a command the test needs. Absent, the test
// skips: systemd-analyze and haproxy are Debian packages (systemd,
// haproxy); scripts/deps.sh installs haproxy, so under CI=true a missing
// haproxy fails instead.
func needTool(t *testing.T, name string, requiredInCI bool) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if requiredInCI && os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed, and CI must run this test (scripts/deps.sh installs it)", name)
		}
		t.Skipf("%s is not installed: %v", name, err)
	}
	return p
}

// unitDir lays out a copy of the systemd files in a temporary directory,
// with sc-server's path rewritten to an executable that exists there
// (systemd-analyze checks that ExecStart= names one) and, unless dropIn is
// empty, that drop-in of systemd/sc-server.service.d beside the unit. It
// returns the unit's path.
func unitDir(t *testing.T, dropIn string) string {
	t.Helper()
	dir := t.TempDir()
	// Any executable will do: systemd-analyze checks the path, it does
	// not run it. This test's own binary is one that surely exists.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin", "sc-server")
	mustCopy(t, self, bin, 0o755)
	rewrite := func(src, dst string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(binPath)) {
			t.Fatalf("%s does not run %s", src, binPath)
		}
		mustWrite(t, dst, bytes.ReplaceAll(data, []byte(binPath), []byte(bin)), 0o644)
	}
	unit := filepath.Join(dir, "sc-server.service")
	rewrite("systemd/sc-server.service", unit)
	if dropIn != "" {
		rewrite("systemd/sc-server.service.d/"+dropIn, filepath.Join(dir, "sc-server.service.d", dropIn))
	}
	return unit
}

// modes are the ways the unit runs: certificates made in the state
// directory, operator-provided ones through LoadCredential=, and keys in a
// PKCS#11 token with the certificate and PIN through LoadCredential=.
var modes = []struct {
	name   string
	dropIn string
}{
	{"state directory", ""},
	{"credentials drop-in", "credentials.conf"},
	{"token drop-in", "token.conf"},
}

// systemd-analyze verify accepts the unit in both modes, and prints
// nothing: it reports unknown keys and bad values as warnings on stderr
// with exit status 0, so any output is a failure here.
func TestSystemdVerify(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", false)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			unit := unitDir(t, m.dropIn)
			args := []string{"verify"}
			env := os.Environ()
			if _, err := exec.LookPath("man"); err == nil {
				// Documentation=man:sc-server(1) is checked against the
				// page this repository generates.
				manDir := filepath.Join(t.TempDir(), "man")
				mustCopy(t, "../docs/man/sc-server.1", filepath.Join(manDir, "man1", "sc-server.1"), 0o644)
				env = append(env, "MANPATH="+manDir)
			} else {
				t.Log("man is not installed: not checking Documentation=man:sc-server(1)")
				args = append(args, "--man=no")
			}
			cmd := exec.Command(analyze, append(args, unit)...)
			cmd.Env = env
			out, err := childproc.CombinedOutput(cmd)
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", m.name, err, out)
			}
		})
	}
}

// securityThreshold is the highest overall exposure the sandbox may have
// in systemd-analyze security, in tenths (1.1 when written). Loosening the
// sandbox past it fails the test.
const securityThreshold = 15

// The sandbox keeps its exposure score, in both modes.
func TestSystemdSecurity(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", false)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			unit := unitDir(t, m.dropIn)
			out, err := exec.Command(analyze, "security", "--offline=true", "--man=no", "--no-pager",
				"--threshold="+strconv.Itoa(securityThreshold), unit).CombinedOutput()
			if err != nil {
				t.Errorf("systemd-analyze security: exposure above %d tenths (%v):\n%s", securityThreshold, err, out)
			}
			if i := bytes.LastIndex(out, []byte("Overall exposure")); i >= 0 {
				t.Logf("%s", bytes.TrimSpace(out[i:]))
			}
		})
	}
}

// The sandbox settings DEPLOY.md promises are in the unit, and the drop-in
// turns renewal off and reads the credentials directory.
func TestSystemdSettings(t *testing.T) {
	unit := parseUnit(t, "systemd/sc-server.service")
	want := map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"DynamicUser":             "yes",
		"StateDirectory":          "sc-server",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"CapabilityBoundingSet":   "",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
	}
	for k, v := range want {
		if got := unit.last(k); got != v {
			t.Errorf("sc-server.service %s=%q, want %q", k, got, v)
		}
	}
	settings := effective(t, unit.args(t, "ExecStart"))
	maxConns := settings["max-conns"]
	limit := unit.last("LimitNOFILE")
	if atoi(t, limit) < atoi(t, maxConns)+1024 {
		t.Errorf("LimitNOFILE=%s is less than max-conns=%s + 1024", limit, maxConns)
	}
	stop := mustDuration(t, unit.last("TimeoutStopSec"))
	if drain := mustDuration(t, settings["shutdown-timeout"]); stop <= drain {
		t.Errorf("TimeoutStopSec=%v does not exceed shutdown-timeout=%v: systemd would kill the drain", stop, drain)
	}
	// ExecStartPre skips --check on the first run by looking for the
	// pair in the state directory: the configuration must put it there.
	for _, f := range []string{"cert", "key"} {
		if want := "/var/lib/sc-server/server." + map[string]string{"cert": "crt", "key": "key"}[f]; settings[f] != want {
			t.Errorf("sc-server.toml: %s = %q, want %q, the state directory (%%S/sc-server) where ExecStartPre looks", f, settings[f], want)
		}
	}
	if !strings.Contains(strings.Join(unit.all("ExecStartPre"), " "), "%S/sc-server/server.crt") {
		t.Errorf("ExecStartPre does not look for %%S/sc-server/server.crt")
	}

	withDropIn := parseUnit(t, "systemd/sc-server.service", "systemd/sc-server.service.d/credentials.conf")
	args := withDropIn.args(t, "ExecStart")
	if got := flagValue(t, args, "auto-renew"); got != "false" {
		t.Errorf("with the credentials drop-in --auto-renew=%s, want false: the credentials directory is read-only", got)
	}
	for _, f := range []string{"cert", "key", "next-key"} {
		if v := flagValue(t, args, f); !strings.HasPrefix(v, "%d/") {
			t.Errorf("with the credentials drop-in --%s=%s, want a file in %%d (the credentials directory)", f, v)
		}
	}
	if creds := withDropIn.all("LoadCredential"); len(creds) < 3 {
		t.Errorf("the drop-in loads %d credentials, want the certificate, key and next key", len(creds))
	}
	for _, name := range []string{"credentials.conf", "token.conf"} {
		dropIn := parseUnit(t, "systemd/sc-server.service.d/"+name)
		for _, k := range []string{"ExecStartPre", "ExecStart"} {
			if vs := dropIn.all(k); len(vs) != 2 || vs[0] != "" {
				t.Errorf("%s must reset %s (an empty %s=) before setting it, or both command lines run: %q", name, k, k, vs)
			}
		}
	}

	// Keys in a token (issue 17): the key URIs and the PIN come from the
	// credentials directory, the PIN by file and never on a command line.
	withToken := parseUnit(t, "systemd/sc-server.service", "systemd/sc-server.service.d/token.conf")
	args = withToken.args(t, "ExecStart")
	for f, want := range map[string]string{"cert": "%d/server.crt", "key": "%d/server.uri", "next-key": "%d/server.next.uri", "token-pin-file": "%d/token-pin", "auto-renew": "false"} {
		if got := flagValue(t, args, f); got != want {
			t.Errorf("with the token drop-in --%s=%s, want %s", f, got, want)
		}
	}
	creds := strings.Join(withToken.all("LoadCredential"), " ")
	for _, want := range []string{"server.crt:", "server.uri:", "server.next.uri:", "token-pin:"} {
		if !strings.Contains(creds, want) {
			t.Errorf("the token drop-in does not load %s (LoadCredential=%s)", strings.TrimSuffix(want, ":"), creds)
		}
	}
	if strings.Contains(strings.Join(withToken.all("Environment"), " "), "pin-value") {
		t.Errorf("the token drop-in puts a PIN on the command line")
	}
}

// effective returns sc-server's effective settings with args and the
// configuration file the unit is used with (sc-server.toml, installed as
// /etc/space-captain/sc-server.toml), as --print-config prints them, in
// an environment without SC_SERVER_* variables.
func effective(t *testing.T, args []string) map[string]string {
	t.Helper()
	cmd := servercmd.NewRootCmd(servercmd.Env{Environ: func() []string { return nil }})
	var out, errOut bytes.Buffer
	cmd.SetArgs(append(append([]string{}, args...), "--config", "sc-server.toml", "--print-config"))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if code := cli.Main(context.Background(), cmd); code != 0 {
		t.Fatalf("sc-server %q --config sc-server.toml --print-config: exit %d\n%s", args, code, errOut.String())
	}
	m := map[string]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k, rest, ok := strings.Cut(line, " = ")
		if !ok {
			t.Fatalf("--print-config printed %q", line)
		}
		v, _, _ := strings.Cut(rest, " #")
		m[k] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return m
}

// The configuration file the unit reads is valid, with the unit's flags
// in every mode, and sets what DEPLOY.md says the unit relies on.
func TestConfigFile(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			files := []string{"systemd/sc-server.service"}
			if m.dropIn != "" {
				files = append(files, "systemd/sc-server.service.d/"+m.dropIn)
			}
			settings := effective(t, parseUnit(t, files...).args(t, "ExecStart"))
			for k, want := range map[string]string{"listen": ":4242", "metrics-listen": "127.0.0.1:9242", "log-format": "json"} {
				if settings[k] != want {
					t.Errorf("%s = %q, want %q", k, settings[k], want)
				}
			}
			if m.dropIn != "" && !strings.HasPrefix(settings["cert"], "%d/") {
				t.Errorf("with the drop-in cert = %q, want the credentials directory's copy", settings["cert"])
			}
		})
	}
}

// Every sc-server flag the service files pass exists and takes the value
// given, as sc-server itself parses it.
func TestServerFlagsExist(t *testing.T) {
	dep := deployment(t)
	plain := parseUnit(t, "systemd/sc-server.service")
	creds := parseUnit(t, "systemd/sc-server.service", "systemd/sc-server.service.d/credentials.conf")
	token := parseUnit(t, "systemd/sc-server.service", "systemd/sc-server.service.d/token.conf")
	sources := map[string][]string{
		"systemd ExecStart":                plain.args(t, "ExecStart"),
		"systemd ExecStartPre":             plain.args(t, "ExecStartPre"),
		"systemd credentials ExecStart":    creds.args(t, "ExecStart"),
		"systemd credentials ExecStartPre": creds.args(t, "ExecStartPre"),
		"systemd token ExecStart":          token.args(t, "ExecStart"),
		"systemd token ExecStartPre":       token.args(t, "ExecStartPre"),
		"kubernetes deployment args":       dep.Spec.Template.Spec.Containers[0].Args,
	}
	for name, args := range sources {
		t.Run(name, func(t *testing.T) {
			fs := servercmd.NewRootCmd(servercmd.Env{}).Flags()
			if err := fs.Parse(args); err != nil {
				t.Errorf("sc-server does not take %q: %v", args, err)
			}
			if fs.NArg() > 0 {
				t.Errorf("arguments that are not flags: %q", fs.Args())
			}
		})
	}
}

// haproxy -c accepts the configuration; it sends PROXY v2 to every
// instance and checks /readyz on a port of its own.
func TestHAProxyConfig(t *testing.T) {
	data, err := os.ReadFile("haproxy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	for _, want := range []string{
		"mode tcp",
		"option httpchk",
		"http-check send meth GET uri /readyz",
		"http-check expect status 200",
		"balance leastconn",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	defaultServer := regexp.MustCompile(`(?m)^\s*default-server\s+(.*)$`).FindStringSubmatch(cfg)
	if defaultServer == nil {
		t.Fatal("haproxy.cfg has no default-server line")
	}
	for _, opt := range []string{"check", "send-proxy-v2", "maxconn"} {
		if !slices.Contains(strings.Fields(defaultServer[1]), opt) {
			t.Errorf("default-server lacks %s: %s", opt, defaultServer[0])
		}
	}
	servers := regexp.MustCompile(`(?m)^\s*server\s+(\S+)\s+(\S+)(.*)$`).FindAllStringSubmatch(cfg, -1)
	if len(servers) != 2 {
		t.Errorf("got %d server lines, want 2 (two instances on loopback)", len(servers))
	}
	for _, s := range servers {
		// The health check goes to the metrics port: without `port` it
		// would hit the game port, with a PROXY header, and fail.
		if m := regexp.MustCompile(`\bport\s+\d+`).FindString(s[3]); m == "" {
			t.Errorf("server %s has no check port (the metrics port): %s", s[1], strings.TrimSpace(s[0]))
		}
		if !strings.HasPrefix(s[2], "127.0.0.1:") {
			t.Errorf("server %s is at %s, want loopback", s[1], s[2])
		}
	}

	haproxy := needTool(t, "haproxy", true)
	out, err := childproc.CombinedOutput(exec.Command(haproxy, "-c", "-f", "haproxy/haproxy.cfg"))
	if err != nil || !bytes.Contains(out, []byte("Configuration file is valid")) || bytes.Contains(out, []byte("WARNING")) {
		t.Errorf("haproxy -c: %v\n%s", err, out)
	}
}

// k8sDeployment is the part of a Deployment the checks read.
type k8sDeployment struct {
	Kind     string
	Metadata struct{ Name string }
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		}
		Template struct {
			Metadata struct{ Labels map[string]string }
			Spec     struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
					FSGroup      int  `yaml:"fsGroup"`
				} `yaml:"securityContext"`
				Containers []struct {
					Name  string
					Image string
					Args  []string
					Ports []struct {
						Name          string
						ContainerPort int `yaml:"containerPort"`
						Protocol      string
					}
					ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
					LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
					Lifecycle      struct {
						PreStop struct {
							Sleep struct{ Seconds int }
						} `yaml:"preStop"`
					}
					Resources struct {
						Requests map[string]string
						Limits   map[string]string
					}
					SecurityContext struct {
						AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
						ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
						Capabilities             struct{ Drop []string }
					} `yaml:"securityContext"`
					VolumeMounts []k8sMount `yaml:"volumeMounts"`
				}
				Volumes []struct {
					Name   string
					Secret *struct {
						SecretName string `yaml:"secretName"`
					}
				}
			}
		}
	}
}

type k8sMount struct {
	Name      string
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string
		Port string
	} `yaml:"httpGet"`
}

func deployment(t *testing.T) *k8sDeployment {
	t.Helper()
	var d k8sDeployment
	mustDecodeYAML(t, "kubernetes/deployment.yaml", &d)
	if d.Kind != "Deployment" || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("kubernetes/deployment.yaml: got kind %q with %d containers, want a Deployment with one", d.Kind, len(d.Spec.Template.Spec.Containers))
	}
	return &d
}

// The manifests parse, and hold together: the probes hit the metrics
// port's /readyz and /healthz, the certificate files come from the
// Secret's keys (as the documented kubectl command makes them) through a
// read-only, whole-volume mount, renewal is off, the pod is non-root with
// a read-only root, the grace period outlasts preStop plus the drain, and
// the Service and PodDisruptionBudget select the Deployment's pods.
func TestKubernetesManifests(t *testing.T) {
	d := deployment(t)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	args := c.Args

	ports := map[string]int{}
	protocols := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		protocols[p.Name] = p.Protocol
	}
	if ports["game"] != 4242 || ports["metrics"] == 0 {
		t.Errorf("container ports %v: want game 4242 and metrics", ports)
	}
	// Issue 16: DTLS on UDP, the same port number.
	if ports["game-udp"] != 4242 || protocols["game-udp"] != "UDP" || !slices.Contains(args, "--dtls") {
		t.Errorf("container ports %v %v, args %v: want game-udp UDP 4242 and --dtls", ports, protocols, args)
	}
	if _, port, _ := strings.Cut(flagValue(t, args, "metrics-listen"), ":"); port != strconv.Itoa(ports["metrics"]) {
		t.Errorf("--metrics-listen port %s is not the metrics containerPort %d", port, ports["metrics"])
	}
	for _, p := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != "metrics" {
			t.Errorf("%s: got %+v, want GET %s on port metrics", p.name, p.probe, p.path)
		}
	}

	if got := flagValue(t, args, "auto-renew"); got != "false" {
		t.Errorf("--auto-renew=%s, want false: the Secret volume is read-only", got)
	}
	// One Secret volume, mounted once, and (issue 15) one writable volume
	// for the key-change guard's state.
	var secretVol, stateVol string
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			if secretVol != "" {
				t.Fatalf("two Secret volumes: %+v", pod.Volumes)
			}
			secretVol = v.Name
		} else {
			stateVol = v.Name
		}
	}
	if secretVol == "" || len(pod.Volumes) > 2 || len(c.VolumeMounts) != len(pod.Volumes) {
		t.Fatalf("want one Secret volume and one for the key state, each mounted once: %+v, %+v", pod.Volumes, c.VolumeMounts)
	}
	var mount k8sMount
	for _, m := range c.VolumeMounts {
		switch m.Name {
		case secretVol:
			mount = m
		case stateVol:
			if m.ReadOnly || !strings.HasPrefix(flagValue(t, args, "key-state"), m.MountPath+"/") {
				t.Errorf("state volume mount %+v: want it writable and --key-state (%s) in it", m, flagValue(t, args, "key-state"))
			}
		}
	}
	if mount.SubPath != "" || !mount.ReadOnly || mount.Name != secretVol {
		t.Errorf("volume mount %+v: want the whole Secret volume %q, read-only (a subPath mount never sees updates)", mount, secretVol)
	}
	secretKeys := documentedSecretKeys(t)
	for _, f := range []string{"cert", "key", "next-key", "ticket-keys"} {
		v := flagValue(t, args, f)
		if filepath.Dir(v) != mount.MountPath || !slices.Contains(secretKeys, filepath.Base(v)) {
			t.Errorf("--%s=%s: want a key of the Secret (%v) under %s", f, v, secretKeys, mount.MountPath)
		}
	}

	sc := c.SecurityContext
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.RunAsUser == 0 || !sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("security context: pod %+v, container %+v; want non-root, read-only root, no privilege escalation, all capabilities dropped", pod.SecurityContext, sc)
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	drain := mustDuration(t, flagValue(t, args, "shutdown-timeout"))
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second
	if preStop == 0 || grace <= preStop+drain {
		t.Errorf("terminationGracePeriodSeconds %v must exceed the preStop sleep %v plus --shutdown-timeout %v", grace, preStop, drain)
	}

	labels := d.Spec.Template.Metadata.Labels
	if !selects(d.Spec.Selector.MatchLabels, labels) {
		t.Errorf("the Deployment's selector %v does not select its pods %v", d.Spec.Selector.MatchLabels, labels)
	}
	var svc struct {
		Kind string
		Spec struct {
			Selector map[string]string
			Ports    []struct {
				Port       int
				TargetPort string `yaml:"targetPort"`
				Protocol   string
			}
		}
	}
	mustDecodeYAML(t, "kubernetes/service.yaml", &svc)
	if svc.Kind != "Service" || !selects(svc.Spec.Selector, labels) {
		t.Errorf("service.yaml: kind %q, selector %v; want a Service selecting %v", svc.Kind, svc.Spec.Selector, labels)
	}
	if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[0].Port != 4242 || ports[svc.Spec.Ports[0].TargetPort] == 0 || svc.Spec.Ports[0].Protocol != "TCP" ||
		svc.Spec.Ports[1].Port != 4242 || protocols[svc.Spec.Ports[1].TargetPort] != "UDP" || svc.Spec.Ports[1].Protocol != "UDP" {
		t.Errorf("service ports %+v: want TCP 4242 and UDP 4242, each to a named container port of its protocol", svc.Spec.Ports)
	}
	var pdb struct {
		Kind string
		Spec struct {
			MaxUnavailable int `yaml:"maxUnavailable"`
			Selector       struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			}
		}
	}
	mustDecodeYAML(t, "kubernetes/pdb.yaml", &pdb)
	if pdb.Kind != "PodDisruptionBudget" || pdb.Spec.MaxUnavailable != 1 || !selects(pdb.Spec.Selector.MatchLabels, labels) {
		t.Errorf("pdb.yaml: %+v; want a PodDisruptionBudget of maxUnavailable 1 selecting %v", pdb, labels)
	}
	var kust struct{ Resources []string }
	mustDecodeYAML(t, "kubernetes/kustomization.yaml", &kust)
	for _, r := range kust.Resources {
		if _, err := os.Stat(filepath.Join("kubernetes", r)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
	}
}

// documentedSecretKeys returns the Secret's keys as the kubectl command in
// deployment.yaml and docs/DEPLOY.md makes them (--from-file=KEY=PATH);
// both must name the same ones.
func documentedSecretKeys(t *testing.T) []string {
	t.Helper()
	// Only the Secret's own commands count: the guide makes other objects
	// (the players' ConfigMap) with --from-file too. A command runs on
	// over the lines its backslashes continue.
	command := regexp.MustCompile(`kubectl create secret generic sc-server-tls(?:[^\n]*\\\n)*[^\n]*`)
	re := regexp.MustCompile(`--from-file=([A-Za-z0-9._-]+)=`)
	var keys [][]string
	for _, f := range []string{"kubernetes/deployment.yaml", "../docs/DEPLOY.md"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var k []string
		for _, cmd := range command.FindAllString(string(data), -1) {
			for _, m := range re.FindAllStringSubmatch(cmd, -1) {
				if !slices.Contains(k, m[1]) {
					k = append(k, m[1])
				}
			}
		}
		slices.Sort(k)
		if len(k) == 0 {
			t.Fatalf("%s shows no kubectl create secret ... --from-file=KEY=FILE command", f)
		}
		keys = append(keys, k)
	}
	if !slices.Equal(keys[0], keys[1]) {
		t.Errorf("the Secret's keys differ: deployment.yaml %v, docs/DEPLOY.md %v", keys[0], keys[1])
	}
	return keys[0]
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// unit is a systemd unit file (plus drop-ins) as key, value pairs in
// order, continuation lines joined.
type unit struct{ kv [][2]string }

func parseUnit(t *testing.T, files ...string) *unit {
	t.Helper()
	u := &unit{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		var cont string
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if cont != "" {
				line, cont = cont+" "+line, ""
			}
			if strings.HasSuffix(line, "\\") {
				cont = strings.TrimSuffix(line, "\\")
				continue
			}
			if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not a key=value line: %q", f, line)
			}
			u.kv = append(u.kv, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return u
}

// all returns every value of key, empty resets included.
func (u *unit) all(key string) []string {
	var vs []string
	for _, kv := range u.kv {
		if kv[0] == key {
			vs = append(vs, kv[1])
		}
	}
	return vs
}

// last returns the value that wins for a single-valued key.
func (u *unit) last(key string) string {
	vs := u.all(key)
	if len(vs) == 0 {
		return "<unset>"
	}
	return vs[len(vs)-1]
}

// env returns the Environment= assignments, later ones winning.
func (u *unit) env() map[string]string {
	env := map[string]string{}
	for _, v := range u.all("Environment") {
		v = strings.Trim(v, `"`)
		if k, val, ok := strings.Cut(v, "="); ok {
			env[k] = val
		}
	}
	return env
}

// args returns sc-server's arguments in the last command line of key
// (ExecStart or ExecStartPre) after an empty reset, with $VAR expanded
// into words as systemd does for an unbraced variable. A command line may
// run sc-server --check through /bin/sh -c 'SCRIPT' sc-server-check ARGS,
// whose ARGS the script passes on as "$@".
func (u *unit) args(t *testing.T, key string) []string {
	t.Helper()
	vs := u.all(key)
	if len(vs) == 0 || vs[len(vs)-1] == "" {
		t.Fatalf("no %s", key)
	}
	line := vs[len(vs)-1]
	env := u.env()
	fields := strings.Fields(line)
	var args []string
	switch {
	case fields[0] == binPath:
		fields = fields[1:]
	case fields[0] == "/bin/sh" && strings.Contains(line, binPath+` --check "$$@"`):
		i := slices.Index(fields, "sc-server-check")
		if i < 0 {
			t.Fatalf("%s: no sc-server-check $0 after the script: %s", key, line)
		}
		args, fields = []string{"--check"}, fields[i+1:]
	default:
		t.Fatalf("%s runs %s, want %s", key, fields[0], binPath)
	}
	for _, f := range fields {
		if name, ok := strings.CutPrefix(f, "$"); ok {
			args = append(args, strings.Fields(env[name])...)
			continue
		}
		args = append(args, f)
	}
	return args
}

// flagValue returns the value of --name=value in args; the files write
// every flag that way.
func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	t.Fatalf("no --%s=VALUE in %q", name, args)
	return ""
}

func mustDecodeYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustCopy(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, dst, data, perm)
}

func mustWrite(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}

// The metrics table in docs/DEPLOY.md lists every metric package metrics
// documents, and nothing else.
func TestMetricsTable(t *testing.T) {
	src, err := os.ReadFile("../internal/metrics/doc.go")
	if err != nil {
		t.Fatal(err)
	}
	guide, err := os.ReadFile("../docs/DEPLOY.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile(`(?m)^//\s+- (spacecaptain_[a-z_]+)`).FindAllSubmatch(src, -1) {
		documented = append(documented, string(m[1]))
	}
	if len(documented) < 10 {
		t.Fatalf("found %d metrics in internal/metrics/doc.go; has its list changed shape?", len(documented))
	}
	var tabled []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(spacecaptain_[a-z_]+)` \\|").FindAllSubmatch(guide, -1) {
		tabled = append(tabled, string(m[1]))
	}
	for _, name := range documented {
		if !slices.Contains(tabled, name) {
			t.Errorf("docs/DEPLOY.md's metrics table lacks %s", name)
		}
	}
	for _, name := range tabled {
		if !slices.Contains(documented, name) {
			t.Errorf("docs/DEPLOY.md lists %s, which internal/metrics does not document", name)
		}
	}
}
