{{/* Names and labels. */}}
{{- define "retrosearch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "retrosearch.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "retrosearch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "retrosearch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "retrosearch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "retrosearch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "retrosearch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}

{{/* The KubeRay CRDs must exist; a clear failure instead of "no matches for kind RayService". */}}
{{- define "retrosearch.requireKubeRay" -}}
{{- if .Values.kuberay.requireCRDs -}}
{{- $missing := list -}}
{{- range list "ray.io/v1/RayService" "ray.io/v1/RayJob" -}}
{{- if not ($.Capabilities.APIVersions.Has .) }}{{ $missing = append $missing . }}{{ end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "\n\nretrosearch needs the KubeRay operator's CRDs, and this cluster has no %s.\nInstall the operator first (helm/README.md):\n  helm repo add kuberay https://ray-project.github.io/kuberay-helm/\n  helm install kuberay-operator kuberay/kuberay-operator --namespace kuberay-system --create-namespace\nRendering offline? Pass --api-versions ray.io/v1/RayService --api-versions ray.io/v1/RayJob (or set kuberay.requireCRDs=false).\n" (join ", " $missing)) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The Secret holding the OpenSearch user name and password, or "" for none. */}}
{{- define "retrosearch.opensearchSecret" -}}
{{- $c := .Values.opensearch.credentials -}}
{{- if and $c.existingSecret $c.create -}}
{{- fail "opensearch.credentials: give existingSecret or create, not both" -}}
{{- end -}}
{{- if $c.existingSecret -}}{{ $c.existingSecret }}{{- else if $c.create -}}{{ include "retrosearch.fullname" . }}-opensearch{{- end -}}
{{- end }}

{{- define "retrosearch.caPath" -}}/etc/retrosearch/opensearch-ca/{{ .Values.opensearch.tls.caKey }}{{- end }}

{{- define "retrosearch.storageClaim" -}}
{{- if .Values.storage.existingClaim -}}{{ .Values.storage.existingClaim }}{{- else if .Values.storage.create.enabled -}}{{ include "retrosearch.fullname" . }}-data{{- end -}}
{{- end }}

{{/* Environment of every RetroSearch container: shared settings, and secrets by reference only. */}}
{{- define "retrosearch.env" -}}
{{- $secret := include "retrosearch.opensearchSecret" . }}
{{- if and $secret .Values.opensearch.credentials.asFiles }}
- name: RETROSEARCH_OPENSEARCH_USER_FILE
  value: /etc/retrosearch/opensearch-credentials/{{ .Values.opensearch.credentials.usernameKey }}
- name: RETROSEARCH_OPENSEARCH_PASSWORD_FILE
  value: /etc/retrosearch/opensearch-credentials/{{ .Values.opensearch.credentials.passwordKey }}
{{- else if $secret }}
- name: RETROSEARCH_OPENSEARCH_USER
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.opensearch.credentials.usernameKey }}
- name: RETROSEARCH_OPENSEARCH_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.opensearch.credentials.passwordKey }}
{{- end }}
{{- if .Values.serve.apiKeySecret.name }}
- name: RETROSEARCH_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.serve.apiKeySecret.name }}
      key: {{ .Values.serve.apiKeySecret.key }}
{{- end }}
{{- end }}

{{- define "retrosearch.envFrom" -}}
- configMapRef:
    name: {{ include "retrosearch.fullname" . }}
{{- end }}

{{- define "retrosearch.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "retrosearch.storageClaim" . }}
- name: data
  mountPath: {{ .Values.storage.mountPath }}
{{- end }}
{{- if .Values.opensearch.tls.caSecret }}
- name: opensearch-ca
  mountPath: /etc/retrosearch/opensearch-ca
  readOnly: true
{{- end }}
{{- if and (include "retrosearch.opensearchSecret" .) .Values.opensearch.credentials.asFiles }}
- name: opensearch-credentials
  mountPath: /etc/retrosearch/opensearch-credentials
  readOnly: true
{{- end }}
{{- end }}

{{- define "retrosearch.volumes" -}}
- name: tmp
  emptyDir: {}
{{- with include "retrosearch.storageClaim" . }}
- name: data
  persistentVolumeClaim:
    claimName: {{ . }}
{{- end }}
{{- if .Values.opensearch.tls.caSecret }}
- name: opensearch-ca
  secret:
    secretName: {{ .Values.opensearch.tls.caSecret }}
    items:
      - key: {{ .Values.opensearch.tls.caKey }}
        path: {{ .Values.opensearch.tls.caKey }}
{{- end }}
{{- with include "retrosearch.opensearchSecret" . }}
{{- if $.Values.opensearch.credentials.asFiles }}
- name: opensearch-credentials
  secret:
    secretName: {{ . }}
    # Readable by the pods' group (fsGroup) only.
    defaultMode: 0440
    items:
      - key: {{ $.Values.opensearch.credentials.usernameKey }}
        path: {{ $.Values.opensearch.credentials.usernameKey }}
      - key: {{ $.Values.opensearch.credentials.passwordKey }}
        path: {{ $.Values.opensearch.credentials.passwordKey }}
{{- end }}
{{- end }}
{{- end }}

{{- define "retrosearch.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "retrosearch.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
{{- end }}

{{- define "retrosearch.metricsAnnotations" -}}
{{- if .Values.metrics.annotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.serve.port | quote }}
prometheus.io/path: /metrics
{{- end -}}
{{- end }}

{{/*
The arguments of a `retrosearch` command from a values `options` map, as a JSON list. `command`
names the definition in _cli.tpl (generated from the CLI); keys render in sorted order, lists
repeat their option, booleans render the option or its negative, null leaves the option out.
*/}}
{{- define "retrosearch.argv" -}}
{{- $table := index (include "retrosearch.cli.options" . | fromJson) .command -}}
{{- $args := list -}}
{{- range $key, $value := .options -}}
{{- $spec := index $table $key -}}
{{- if not $spec -}}{{- fail (printf "%s: %s is not an option of this command" $.where $key) -}}{{- end -}}
{{- if kindIs "bool" $value -}}
{{- if $value }}{{ $args = append $args $spec.option }}{{ else if hasKey $spec "negative" }}{{ $args = append $args $spec.negative }}{{ end -}}
{{- else if kindIs "slice" $value -}}
{{- range $value }}{{ $args = append (append $args $spec.option) (include "retrosearch.scalar" .) }}{{ end -}}
{{- else if not (kindIs "invalid" $value) -}}
{{- $args = append (append $args $spec.option) (include "retrosearch.scalar" $value) -}}
{{- end -}}
{{- end -}}
{{- toJson $args -}}
{{- end }}

{{/* A string as is; a number as JSON writes it (1000000, not 1e+06). */}}
{{- define "retrosearch.scalar" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ toJson . }}{{ end -}}
{{- end }}

{{/* A list of arguments as one POSIX shell command line (RayJob entrypoints are run by a shell). */}}
{{- define "retrosearch.shellJoin" -}}
{{- $out := list -}}
{{- range . -}}
{{- if regexMatch "^[A-Za-z0-9_./:=@%+,-]+$" . -}}
{{- $out = append $out . -}}
{{- else -}}
{{- $out = append $out (printf "'%s'" (replace "'" "'\\''" .)) -}}
{{- end -}}
{{- end -}}
{{- join " " $out -}}
{{- end }}

{{/*
The pod template of a Ray head or worker group. Arguments: root (the chart's context), group (its
values: resources, nodeSelector, tolerations), role (head or worker), component (a label value),
serve (true for the query service: serve port; probes on workers).
*/}}
{{- define "retrosearch.rayPodTemplate" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "retrosearch.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  {{- if .serve }}
  {{- with include "retrosearch.metricsAnnotations" $root }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
  {{- end }}
spec:
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  automountServiceAccountToken: false
  securityContext:
    {{- include "retrosearch.podSecurityContext" $root | nindent 4 }}
  containers:
    - name: ray-{{ .role }}
      image: {{ include "retrosearch.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      securityContext:
        {{- include "retrosearch.containerSecurityContext" $root | nindent 8 }}
      envFrom:
        {{- include "retrosearch.envFrom" $root | nindent 8 }}
      {{- with include "retrosearch.env" $root }}
      env:
        {{- . | nindent 8 }}
      {{- end }}
      ports:
        {{- if eq .role "head" }}
        - {name: gcs-server, containerPort: 6379}
        - {name: dashboard, containerPort: 8265}
        - {name: client, containerPort: 10001}
        {{- end }}
        - {name: metrics, containerPort: 8080}
        {{- if .serve }}
        - {name: serve, containerPort: {{ $root.Values.serve.port }}}
        {{- end }}
      {{- if and .serve (eq .role "worker") }}
      {{- $p := $root.Values.serve.probes }}
      startupProbe:
        httpGet: {path: /healthz, port: serve}
        periodSeconds: {{ $p.startup.periodSeconds }}
        timeoutSeconds: {{ $p.startup.timeoutSeconds }}
        failureThreshold: {{ $p.startup.failureThreshold }}
      livenessProbe:
        httpGet: {path: /healthz, port: serve}
        periodSeconds: {{ $p.liveness.periodSeconds }}
        timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
        failureThreshold: {{ $p.liveness.failureThreshold }}
      readinessProbe:
        httpGet: {path: /readyz, port: serve}
        periodSeconds: {{ $p.readiness.periodSeconds }}
        timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
        failureThreshold: {{ $p.readiness.failureThreshold }}
      {{- end }}
      resources:
        {{- toYaml .group.resources | nindent 8 }}
      volumeMounts:
        {{- include "retrosearch.volumeMounts" $root | nindent 8 }}
        - name: dshm
          mountPath: /dev/shm
  volumes:
    {{- include "retrosearch.volumes" $root | nindent 4 }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $root.Values.shmSize }}
  {{- with .group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
A RayJob's Ray cluster: a head (the driver runs there; no tasks) and one worker group.
Arguments: root, job (the job's values), component.
*/}}
{{- define "retrosearch.rayJobCluster" -}}
rayVersion: {{ .root.Values.kuberay.rayVersion | quote }}
headGroupSpec:
  rayStartParams:
    num-cpus: "0"
  template:
    {{- include "retrosearch.rayPodTemplate" (dict "root" .root "group" .job.head "role" "head" "component" (printf "%s-head" .component)) | nindent 4 }}
workerGroupSpecs:
  - groupName: workers
    replicas: {{ .job.workers.replicas }}
    minReplicas: {{ .job.workers.replicas }}
    maxReplicas: {{ .job.workers.replicas }}
    rayStartParams: {}
    template:
      {{- include "retrosearch.rayPodTemplate" (dict "root" .root "group" .job.workers "role" "worker" "component" (printf "%s-worker" .component)) | nindent 6 }}
{{- end }}

{{/*
A whole RayJob. Arguments: root, job (values: enabled, options, head, workers, job), name (the
object's name suffix), command (the words after `retrosearch`), definition (in _cli.tpl),
where (the values path, for messages), extra (arguments the chart adds, a list), needsStorage.
*/}}
{{- define "retrosearch.rayJob" -}}
{{- $root := .root -}}
{{- if and .needsStorage (not (include "retrosearch.storageClaim" $root)) -}}
{{- fail (printf "%s: this job writes files (--out, checkpoints) that must outlive its pods; set storage.existingClaim or storage.create.enabled" .where) -}}
{{- end -}}
{{- $argv := concat (list "retrosearch") .command .extra (include "retrosearch.argv" (dict "command" .definition "options" .job.options "where" .where) | fromJsonArray) -}}
apiVersion: ray.io/v1
kind: RayJob
metadata:
  name: {{ include "retrosearch.fullname" $root }}-{{ .name }}
  labels:
    {{- include "retrosearch.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  entrypoint: {{ include "retrosearch.shellJoin" $argv | quote }}
  submissionMode: K8sJobMode
  shutdownAfterJobFinishes: true
  ttlSecondsAfterFinished: {{ .job.job.ttlSecondsAfterFinished }}
  {{- if .job.job.activeDeadlineSeconds }}
  activeDeadlineSeconds: {{ .job.job.activeDeadlineSeconds }}
  {{- end }}
  backoffLimit: {{ .job.job.backoffLimit }}
  rayClusterSpec:
    {{- include "retrosearch.rayJobCluster" (dict "root" $root "job" .job "component" .name) | nindent 4 }}
{{- end }}
