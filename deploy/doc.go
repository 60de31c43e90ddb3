// Package deploy holds no code: it is the home of sc-server's service
// files — systemd units (systemd/), an HAProxy configuration for several
// instances (haproxy/) and Kubernetes manifests (kubernetes/) — and of the
// tests that check them: systemd-analyze verify and security on the units,
// haproxy -c on the configuration, the manifests' structure, and that every
// sc-server flag they use exists. docs/DEPLOY.md is the guide to them.
package deploy
