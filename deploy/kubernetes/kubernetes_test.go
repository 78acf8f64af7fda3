// Package kubernetes_test renders every overlay with kustomize's API
// (krusty, as kubectl apply -k does), decodes each object strictly into
// k8s.io/api's types, and checks the invariants docs/operations.md
// promises.
package kubernetes_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/vigie-sante/vigie/deploy/internal/vigie"
)

// objects is an overlay rendered and decoded, by kind and name.
type objects struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	jobs         map[string]*batchv1.Job
	services     map[string]*corev1.Service
	pdbs         map[string]*policyv1.PodDisruptionBudget
	policies     map[string]*networkingv1.NetworkPolicy
	configMaps   map[string]*corev1.ConfigMap
	other        []string
}

// decodeStrict decodes b into v, refusing a field v's type does not have.
func decodeStrict(b []byte, v any) error { return yaml.UnmarshalStrict(b, v) }

func render(t *testing.T, dir string) *objects {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	o := &objects{
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		jobs: map[string]*batchv1.Job{}, services: map[string]*corev1.Service{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, policies: map[string]*networkingv1.NetworkPolicy{},
		configMaps: map[string]*corev1.ConfigMap{},
	}
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		kind, name := r.GetKind(), r.GetName()
		var v any
		switch kind {
		case "Deployment":
			x := new(appsv1.Deployment)
			o.deployments[name], v = x, x
		case "StatefulSet":
			x := new(appsv1.StatefulSet)
			o.statefulSets[name], v = x, x
		case "Job":
			x := new(batchv1.Job)
			o.jobs[name], v = x, x
		case "Service":
			x := new(corev1.Service)
			o.services[name], v = x, x
		case "PodDisruptionBudget":
			x := new(policyv1.PodDisruptionBudget)
			o.pdbs[name], v = x, x
		case "NetworkPolicy":
			x := new(networkingv1.NetworkPolicy)
			o.policies[name], v = x, x
		case "ConfigMap":
			x := new(corev1.ConfigMap)
			o.configMaps[name], v = x, x
		case "ServiceAccount":
			v = new(corev1.ServiceAccount)
		case "PersistentVolumeClaim":
			v = new(corev1.PersistentVolumeClaim)
		default:
			t.Errorf("%s %s: a kind the test does not decode", kind, name)
			continue
		}
		if err := decodeStrict(b, v); err != nil {
			t.Errorf("%s %s: %v", kind, name, err)
		}
		o.other = append(o.other, kind+"/"+name)
	}
	return o
}

// TestStrictDecoding: a field k8s.io/api does not have fails the decode,
// so a typo in a manifest fails the tests below.
func TestStrictDecoding(t *testing.T) {
	var d appsv1.Deployment
	if err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 3\n"), &d); err == nil {
		t.Error("spec.replica decoded without an error, want unknown fields refused")
	}
}

func TestEmbedded(t *testing.T) {
	o := render(t, "overlays/embedded")
	if len(o.deployments) != 0 {
		t.Error("the embedded mode has a Deployment: its data directory is locked by one process")
	}
	s, ok := o.statefulSets["vigie"]
	if !ok {
		t.Fatalf("no StatefulSet vigie in %v", o.other)
	}
	if s.Spec.Replicas == nil || *s.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1: the data directory is locked", s.Spec.Replicas)
	}
	if len(s.Spec.VolumeClaimTemplates) != 1 || !mounts(s.Spec.Template.Spec.Containers[0], s.Spec.VolumeClaimTemplates[0].Name, "/data") {
		t.Error("the data directory /data is not on the StatefulSet's claim")
	}
	checkServer(t, o, "StatefulSet vigie", s.Spec.Template, vigie.DrainTimeout(t))
	checkSecretFile(t, s.Spec.Template, "VIGIE_KEK_FILE")
}

func TestCluster(t *testing.T) {
	o := render(t, "overlays/cluster")
	if len(o.statefulSets) != 0 {
		t.Error("the cluster has a StatefulSet: its nodes keep nothing of their own")
	}
	d, ok := o.deployments["vigie"]
	if !ok {
		t.Fatalf("no Deployment vigie in %v", o.other)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", d.Spec.Replicas)
	}
	tmpl := d.Spec.Template
	checkServer(t, o, "Deployment vigie", tmpl, vigie.DrainTimeout(t))
	// Keys from a Secret, the same on every node.
	keys := false
	for _, v := range tmpl.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "vigie-keys" && mounts(tmpl.Spec.Containers[0], v.Name, "/data/keys") {
			keys = true
		}
	}
	if !keys {
		t.Error("the keys directory /data/keys is not the Secret vigie-keys")
	}
	env := envOf(o, tmpl.Spec.Containers[0])
	for _, name := range []string{"VIGIE_DB", "VIGIE_TRILLIAN", "VIGIE_TRILLIAN_TREE_ID", "VIGIE_LOG_NAME"} {
		if _, ok := env[name]; !ok {
			t.Errorf("the nodes have no %s", name)
		}
	}
	if db := env["VIGIE_DB"]; db.ValueFrom == nil || db.ValueFrom.SecretKeyRef == nil {
		t.Error("VIGIE_DB is not from a Secret: its URL holds the database password")
	}

	pdb, ok := o.pdbs["vigie"]
	if !ok || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 2 || !selects(pdb.Spec.Selector.MatchLabels, tmpl.Labels) {
		t.Errorf("PodDisruptionBudget %+v, want at least 2 of the Deployment's pods kept", pdb)
	}
	np, ok := o.policies["vigie"]
	if !ok || !selects(np.Spec.PodSelector.MatchLabels, tmpl.Labels) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy %+v, want ingress and egress of the Deployment's pods", np)
	}

	job, ok := o.jobs["vigie-init"]
	if !ok {
		t.Fatalf("no Job vigie-init in %v", o.other)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"init"}) || c.Image != d.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("Job vigie-init runs %s %q, want vigie init from the nodes' image", c.Image, c.Args)
	}
	if _, ok := envOf(o, c)["VIGIE_DB"]; !ok {
		t.Error("Job vigie-init has no VIGIE_DB")
	}
	checkPodSecurity(t, "Job vigie-init", job.Spec.Template)
}

// checkServer checks a pod template running vigie serve.
func checkServer(t *testing.T, o *objects, what string, tmpl corev1.PodTemplateSpec, drain time.Duration) {
	t.Helper()
	checkPodSecurity(t, what, tmpl)
	spec := tmpl.Spec
	var grace time.Duration
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= drain {
		t.Errorf("%s: terminationGracePeriodSeconds %v, want more than --drain-timeout (%v)", what, grace, drain)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", what, len(spec.Containers))
	}
	c := spec.Containers[0]
	if !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("%s: args %q, want serve", what, c.Args)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		want := map[string]string{"readiness": "/readyz", "liveness": "/healthz"}[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port.String() != "https" {
			t.Errorf("%s: %s probe %+v, want GET %s over HTTPS", what, name, p, want)
		}
	}
	req := c.Resources.Requests
	if req.Cpu().IsZero() || req.Memory().IsZero() {
		t.Errorf("%s: resource requests %v, want CPU and memory", what, req)
	}
	if lim := c.Resources.Limits.Memory(); lim.IsZero() || lim.Cmp(*req.Memory()) < 0 {
		t.Errorf("%s: memory limit %v, want one above the request", what, lim)
	}
	env := envOf(o, c)
	if _, ok := env["VIGIE_LOG_NAME"]; !ok {
		t.Errorf("%s: no VIGIE_LOG_NAME, which listening beyond loopback requires", what)
	}
	// The image's VIGIE_TLS_CERT and VIGIE_TLS_KEY: TLS beyond loopback.
	tls := false
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "vigie-tls" && mounts(c, v.Name, "/etc/vigie/tls") {
			tls = true
		}
	}
	if !tls {
		t.Errorf("%s: the Secret vigie-tls is not at /etc/vigie/tls", what)
	}
	svc, ok := o.services["vigie"]
	if !ok || !selects(svc.Spec.Selector, tmpl.Labels) {
		t.Errorf("%s: the Service vigie does not select its pods", what)
	}
	for _, p := range svc.Spec.Ports {
		found := false
		for _, cp := range c.Ports {
			found = found || cp.Name == p.TargetPort.String()
		}
		if !found {
			t.Errorf("Service port %s targets %s, which %s does not have", p.Name, p.TargetPort.String(), what)
		}
	}
}

// checkPodSecurity: not root, no privilege, a read-only root, and secret
// files Vigie accepts (root:fsGroup, 0440).
func checkPodSecurity(t *testing.T, what string, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	psc := tmpl.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.FSGroup == nil {
		t.Errorf("%s: pod securityContext %+v, want runAsNonRoot, a non-zero runAsUser and an fsGroup", what, psc)
	}
	if tmpl.Spec.AutomountServiceAccountToken == nil || *tmpl.Spec.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted; Vigie never calls Kubernetes", what)
	}
	for _, c := range tmpl.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: container %s securityContext %+v, want readOnlyRootFilesystem, no privilege escalation, every capability dropped", what, c.Name, sc)
		}
	}
	for _, v := range tmpl.Spec.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o037 != 0) {
			t.Errorf("%s: Secret volume %s mode %v, want 0440 or less (the secret-file rule)", what, v.Name, v.Secret.DefaultMode)
		}
	}
}

// checkSecretFile: the file named by variable name is on a Secret volume.
func checkSecretFile(t *testing.T, tmpl corev1.PodTemplateSpec, name string) {
	t.Helper()
	c := tmpl.Spec.Containers[0]
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		for _, m := range c.VolumeMounts {
			if filepath.Dir(e.Value) != m.MountPath {
				continue
			}
			for _, v := range tmpl.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					return
				}
			}
		}
		t.Errorf("%s=%s is not on a Secret volume", name, e.Value)
		return
	}
	t.Errorf("no %s", name)
}

// envOf gives c's variables, with those of its ConfigMaps.
func envOf(o *objects, c corev1.Container) map[string]corev1.EnvVar {
	env := map[string]corev1.EnvVar{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		for name, cm := range o.configMaps {
			// The generator appends a hash to the name, and kustomize
			// rewrites the reference to match.
			if name == from.ConfigMapRef.Name {
				for k, v := range cm.Data {
					env[k] = corev1.EnvVar{Name: k, Value: v}
				}
			}
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	return env
}

func mounts(c corev1.Container, volume, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume && m.MountPath == path {
			return true
		}
	}
	return false
}

// selects reports whether selector's labels are all among labels.
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
