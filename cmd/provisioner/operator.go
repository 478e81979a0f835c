package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
	"github.com/natsprov/provisioner/safefile"
)

// runOperator is the operator signing-key rotation, a step a command. The
// steps that change the operator JWT need the operator's identity key and
// run offline; README "Rotating the operator signing key" has the whole
// procedure.
func runOperator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatch(ctx, "operator", "rotate the operator signing key, a step at a time", []subcommand{
		{"add-signing-key", "offline: add a new signing key to the operator JWT (step 1)", reported("operator add-signing-key", runOperatorAdd)},
		{"finish", "after prov.operator.rotate: make the new key the config's, and update the servers' preloads (step 4)", reported("operator finish", runOperatorFinish)},
		{"remove-signing-key", "offline: remove the old signing key from the operator JWT (step 5)", reported("operator remove-signing-key", runOperatorRemove)},
	}, args, stdout, stderr)
}

// loadIdentity reads the operator identity key and the operator JWT, and
// checks that they belong together.
func loadIdentity(identity, jwtPath string) (nkeys.KeyPair, *jwt.OperatorClaims, error) {
	raw, err := os.ReadFile(jwtPath)
	if err != nil {
		return nil, nil, fmt.Errorf("--operator-jwt: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("--operator-jwt %s: %w", jwtPath, err)
	}
	oc, err := jwt.DecodeOperatorClaims(token)
	if err != nil {
		return nil, nil, fmt.Errorf("--operator-jwt %s is not an operator JWT: %w", jwtPath, err)
	}
	seed, err := os.ReadFile(identity)
	if err != nil {
		return nil, nil, fmt.Errorf("--identity: %w", err)
	}
	kp, err := jwt.ParseDecoratedNKey(seed)
	if err != nil {
		return nil, nil, fmt.Errorf("--identity %s holds no nkey seed", identity)
	}
	if pub, _ := kp.PublicKey(); pub != oc.Subject {
		kp.Wipe()
		return nil, nil, fmt.Errorf("--identity %s is key %s, not the identity key of operator %s", identity, pub, oc.Subject)
	}
	if _, err := kp.Seed(); err != nil {
		return nil, nil, fmt.Errorf("--identity %s holds a public key, not a seed", identity)
	}
	return kp, oc, nil
}

// writeOperator signs the operator JWT with its identity key and writes it
// over path, keeping the old one beside it (.prev).
func writeOperator(path string, oc *jwt.OperatorClaims, identity nkeys.KeyPair) error {
	token, err := oc.Encode(identity)
	if err != nil {
		return fmt.Errorf("sign the operator JWT: %w", err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := safefile.Replace(path+".prev", old, 0o644); err != nil {
		return err
	}
	data, err := jwt.DecorateJWT(token)
	if err != nil {
		return err
	}
	return safefile.Replace(path, data, 0o644)
}

func runOperatorAdd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("operator add-signing-key", "offline: add a new signing key to the operator JWT",
		"provisioner operator add-signing-key --identity FILE --operator-jwt FILE [--out FILE]",
		"provisioner operator add-signing-key --identity OFFLINE-identity-keys/operator-identity.nk --operator-jwt deploy/operator.jwt")
	identity := cmd.String("identity", "", "the operator identity key (`FILE`, a seed); it never needs to leave the offline machine")
	jwtPath := cmd.String("operator-jwt", "", "the operator JWT `FILE` to change (the old one is kept as FILE.prev)")
	out := cmd.String("out", "", "where to write the new signing key (default: operator-signing-<KEY>.nk beside the JWT)")
	if err := cmd.parse(args, stdout, stderr); err != nil {
		return err
	}
	if *identity == "" || *jwtPath == "" {
		return errors.New("operator add-signing-key: --identity and --operator-jwt are required")
	}
	id, oc, err := loadIdentity(*identity, *jwtPath)
	if err != nil {
		return err
	}
	defer id.Wipe()
	// A second key means a rotation is under way (init makes one): adding
	// another would trust a key nothing uses, and overwrite .prev, the
	// operator JWT from before the rotation.
	if len(oc.SigningKeys) > 1 {
		return fmt.Errorf("operator add-signing-key: operator %s already has %d signing keys (%s): a rotation is under way; go on with it from step 2 (README \"Rotating the operator signing key\"), or take out the key you do not want with operator remove-signing-key --key KEY first", oc.Subject, len(oc.SigningKeys), strings.Join(oc.SigningKeys, ", "))
	}
	kp, err := nkeys.CreateOperator()
	if err != nil {
		return err
	}
	defer kp.Wipe()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	if *out == "" {
		*out = filepath.Join(filepath.Dir(*jwtPath), "operator-signing-"+pub[:8]+".nk")
	}
	// On disk before the operator JWT names it: a JWT listing a key whose
	// seed a crash lost would be a rotation nobody can finish.
	if err := safefile.WriteNew(*out, append(seed, '\n'), 0o600); err != nil {
		return fmt.Errorf("write the new signing key: %w", err)
	}
	oc.SigningKeys.Add(pub)
	if err := writeOperator(*jwtPath, oc, id); err != nil {
		os.Remove(*out)
		return err
	}
	fmt.Fprintf(stdout, "Added signing key %s to operator %s.\n  new operator JWT  %s (previous: %s.prev)\n  new signing key   %s (0600)\n\n", pub, oc.Subject, *jwtPath, *jwtPath, *out)
	// A config's paths are relative to the config's directory, not to
	// where this runs: *out as given ("deploy/operator-signing-X.nk" run
	// from above deploy) pasted into deploy/config.json named
	// deploy/deploy/.... The value is given for a config beside the
	// operator JWT, as init writes config.json (and config.container.json,
	// whose container mounts that directory elsewhere).
	next := *out
	if absOut, err := filepath.Abs(*out); err == nil {
		next = absOut
		if absJWT, err := filepath.Abs(*jwtPath); err == nil {
			if rel, err := filepath.Rel(filepath.Dir(absJWT), absOut); err == nil {
				next = rel
			}
		}
	}
	fmt.Fprintf(stdout, "Next:\n  2. give every nats-server the new operator JWT and restart them one at a time\n  3. set \"operator_signing_key_next\": %q in the provisioner's config (relative to the config's directory: this is for a config beside the operator JWT, as init writes it), restart it, and send prov.operator.rotate '{}'\n  4. provisioner operator finish --config CONFIG --server-conf NATS-SERVER.CONF\n  5. provisioner operator remove-signing-key ... --key OLD-KEY, and roll that operator JWT out\n", next)
	return nil
}

func runOperatorRemove(_ context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("operator remove-signing-key", "offline: remove a signing key from the operator JWT",
		"provisioner operator remove-signing-key --identity FILE --operator-jwt FILE --key PUBLIC-KEY [--config FILE ...]",
		"provisioner operator remove-signing-key --identity OFFLINE-identity-keys/operator-identity.nk --operator-jwt deploy/operator.jwt --key OD...")
	identity := cmd.String("identity", "", "the operator identity key (`FILE`, a seed)")
	jwtPath := cmd.String("operator-jwt", "", "the operator JWT `FILE` to change (the old one is kept as FILE.prev)")
	key := cmd.String("key", "", "the public `KEY` of the signing key to remove (O...)")
	var configs stringList
	cmd.Var(&configs, "config", "a provisioner config `FILE` whose operator_signing_key and operator_signing_key_next must stay (default: config.json and config.container.json beside the operator JWT, each if it names that JWT); repeat for more")
	if err := cmd.parse(args, stdout, stderr); err != nil {
		return err
	}
	if *identity == "" || *jwtPath == "" || *key == "" {
		return errors.New("operator remove-signing-key: --identity, --operator-jwt and --key are required")
	}
	id, oc, err := loadIdentity(*identity, *jwtPath)
	if err != nil {
		return err
	}
	defer id.Wipe()
	if !slices.Contains(oc.SigningKeys, *key) {
		return fmt.Errorf("operator remove-signing-key: %s is not a signing key of operator %s (its keys: %s)", *key, oc.Subject, strings.Join(oc.SigningKeys, ", "))
	}
	if len(oc.SigningKeys) == 1 {
		return fmt.Errorf("operator remove-signing-key: %s is the operator's only signing key; add its successor first", *key)
	}
	// A key a provisioner signs with, or is about to: once the servers run
	// the JWT without it, every account it signed stops working. A slip of
	// --key (the new key, or the old one before finish) did that.
	// Both configs init writes beside the JWT: docker-compose.yml's
	// provisioners run config.container.json, and a finish run on
	// config.json alone left it signing with the key this removed.
	defaulted := len(configs) == 0
	if defaulted {
		for _, name := range []string{bootstrap.ConfigFile, bootstrap.ContainerConfigFile} {
			beside := filepath.Join(filepath.Dir(*jwtPath), name)
			if cfg, err := config.Load(beside); err == nil && sameFile(cfg.OperatorJWT, *jwtPath) {
				configs = append(configs, beside)
			}
		}
	}
	for _, path := range configs {
		cfg, err := config.Load(path)
		if err != nil {
			return err
		}
		for _, f := range []struct{ field, file string }{{"operator_signing_key", cfg.OperatorSigningKey}, {"operator_signing_key_next", cfg.OperatorSigningKeyNext}} {
			if f.file == "" {
				continue
			}
			pub, err := seedFilePublicKey(f.file)
			if err != nil {
				return fmt.Errorf("operator remove-signing-key: %s %s: %w", path, f.field, err)
			}
			if pub == *key && f.field == "operator_signing_key" && cfg.OperatorSigningKeyNext == "" {
				// Not a finish left to do: finish refuses a config with no
				// next key, and this refusal sent the operator to it.
				others := slices.DeleteFunc(slices.Clone(oc.SigningKeys), func(k string) bool { return k == *key })
				// A config found beside the JWT may configure no instance:
				// init writes config.container.json for docker-compose.yml
				// also on a deployment that runs `serve --config
				// config.json` alone, and README's rotation, followed
				// there, ended here with no instance to rotate.
				unused := ""
				if defaulted {
					run := "FILE"
					if rest := slices.DeleteFunc(slices.Clone(configs), func(c string) bool { return c == path }); len(rest) > 0 {
						run = strings.Join(rest, " --config ")
					}
					unused = fmt.Sprintf("; or, if no instance runs with %s (init writes it for docker-compose.yml), name the configs the instances do run: --config %s", path, run)
				}
				return fmt.Errorf("operator remove-signing-key: %s signs with %s (its operator_signing_key, %s) and names no operator_signing_key_next: the instance it configures was left out of the rotation; set its operator_signing_key_next to the seed file of %s (the key operator add-signing-key wrote), restart it, send prov.operator.rotate, run operator finish on %s, then remove this key%s", path, *key, f.file, strings.Join(others, " or "), path, unused)
			}
			if pub == *key {
				return fmt.Errorf("operator remove-signing-key: %s signs with %s (its %s, %s): the servers running an operator JWT without it could use no account it signed; finish the rotation (README \"Rotating the operator signing key\") and remove the other key", path, *key, f.field, f.file)
			}
		}
	}
	oc.SigningKeys = slices.DeleteFunc(oc.SigningKeys, func(k string) bool { return k == *key })
	if err := writeOperator(*jwtPath, oc, id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Removed signing key %s from operator %s (%s). Give every nats-server this operator JWT and restart them one at a time.\n", *key, oc.Subject, *jwtPath)
	return nil
}

// seedFilePublicKey returns the public key of the nkey seed in file.
func seedFilePublicKey(file string) (string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	kp, err := jwt.ParseDecoratedNKey(raw)
	if err != nil {
		return "", fmt.Errorf("%s holds no nkey seed", file)
	}
	defer kp.Wipe()
	return kp.PublicKey()
}

// sameFile tells whether a and b name one existing file.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// preloadEntry matches one account of a resolver_preload block as
// bootstrap.ServerConf renders it: `  ACCOUNT: "JWT"`.
var preloadEntry = regexp.MustCompile(`(?m)^(\s*)(A[A-Z2-7]{55})\s*:\s*"([^"]*)"`)

// clusterServerName is the server_name of the nats-server config in
// file when it has a cluster block, and "" otherwise. The config is read
// with the server's own parser, as the server reads it: a block's brace on
// the next line, quoted names, variables (from the config or the
// environment), included files, keys in any case. (Regular expressions
// took one way of writing them: a block written otherwise left its server
// not required, and a variable was taken for the name.)
//
// A variable that only the server's environment sets (a route password,
// say) is read as a placeholder: finish stopped on it, and the only way
// on was to put the server's secrets into the operator's shell. Only a
// server_name or cluster block taken from one is refused, naming it.
func clusterServerName(file string) (string, error) {
	m, placeholders, err := readServerConf(file, conf.ParseFile)
	if err != nil {
		return "", err
	}
	var name string
	cluster := false
	for k, v := range m {
		s, _ := v.(string)
		if env, ok := placeholders[s]; ok && s != "" {
			if lk := strings.ToLower(k); lk == "server_name" || lk == "cluster" {
				return "", fmt.Errorf("operator finish: %s takes its %s from $%s, which this environment does not set: set %s as the server's environment does, and run operator finish again", file, lk, env, env)
			}
		}
		switch strings.ToLower(k) { // as the server matches them
		case "server_name":
			name = s
		case "cluster":
			_, cluster = v.(map[string]any)
		}
	}
	if !cluster {
		return "", nil
	}
	return name, nil
}

// readServerConf reads a nats-server config file with parse (one of the
// server's own parsers), each variable that neither the file nor this
// environment sets read as a placeholder: it returns the config and the
// placeholders it used (value to variable), so that a caller refuses what
// it needs from one. The environment is left as it was.
func readServerConf(file string, parse func(string) (map[string]any, error)) (map[string]any, map[string]string, error) {
	placeholders := map[string]string{} // value to variable
	defer func() {
		for _, v := range placeholders {
			os.Unsetenv(v)
		}
	}()
	for {
		m, err := parse(file)
		if err == nil {
			return m, placeholders, nil
		}
		sub := unsetVariable.FindStringSubmatch(err.Error())
		if sub == nil || len(placeholders) >= 100 {
			return nil, nil, fmt.Errorf("operator finish: read %s as nats-server does: %w", file, err)
		}
		if _, set := os.LookupEnv(sub[1]); set {
			return nil, nil, fmt.Errorf("operator finish: read %s as nats-server does: %w", file, err)
		}
		value := fmt.Sprintf("<%s unset>", sub[1])
		if err := os.Setenv(sub[1], strconv.Quote(value)); err != nil {
			return nil, nil, fmt.Errorf("operator finish: read %s as nats-server does: %w", file, err)
		}
		placeholders[value] = sub[1]
	}
}

// unsetVariable matches conf.ParseFile's error for a variable that
// neither the config nor the environment sets.
var unsetVariable = regexp.MustCompile(`variable reference for '([^']+)' on line \d+ can not be found`)

func runOperatorFinish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("operator finish", "after prov.operator.rotate: make the new key the config's, and update the servers' preloads",
		"provisioner operator finish --config FILE [--server-conf FILE ...]",
		"provisioner operator finish --config deploy/config.json --server-conf deploy/nats-server.conf")
	path := cmd.String("config", "config.json", "the provisioner's config `FILE`: operator_signing_key becomes operator_signing_key_next")
	var confs stringList
	cmd.Var(&confs, "server-conf", "a nats-server config `FILE` whose resolver_preload gets the accounts' current JWTs (with a cluster block, its server_name must answer); repeat for more")
	adminCreds := cmd.String("creds", "", "credentials `FILE` that may send "+config.DefaultSubjectPrefix+".> and $SRV.> (init's admin.creds), to ask every instance which key it signs with (default: admin.creds beside nats_creds, if there is one)")
	if err := cmd.parse(args, stdout, stderr); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if cfg.OperatorSigningKeyNext == "" {
		// Finished already, or the instance was left out of a rotation
		// under way: the operator JWT lists another key than its own.
		if cur, err := provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKey); err == nil {
			cur.Signer.Wipe()
			if others := slices.DeleteFunc(slices.Clone(cur.Claims.SigningKeys), func(k string) bool { return k == cur.SignerKey }); len(others) > 0 {
				return fmt.Errorf("operator finish: %s has no operator_signing_key_next, and signs with %s while the operator JWT also lists %s: if that is the rotation's new key and this instance still signs with the old one, set operator_signing_key_next to its seed file (the key operator add-signing-key wrote), restart the instance, send prov.operator.rotate, and run finish again; if finish already made %s the new key, nothing is left to finish", *path, cur.SignerKey, strings.Join(others, ", "), cur.SignerKey)
			}
		}
		return fmt.Errorf("operator finish: %s has no operator_signing_key_next: nothing to finish", *path)
	}
	// The cluster's servers the configs name must answer: the check knows
	// only the servers that answer its first ping, and one down now comes
	// back with the copies it held, perhaps signed by the old key. A
	// config without a cluster block is a server of its own (init's
	// nats-server.conf beside the container ones), not reached here.
	need := map[string]string{}
	for _, conf := range confs {
		name, err := clusterServerName(conf)
		if err != nil {
			return err
		}
		if name != "" {
			need[name] = conf
		}
	}
	creds, err := credsOption("nats_creds", cfg.NATSCreds)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(cfg.NATSURL, creds, nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", config.RedactURL(cfg.NATSURL), err)
	}
	defer nc.Close()
	// Nothing may still be signed by the old key once the config stops
	// naming it, nor later when the operator JWT drops it.
	next, err := provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKeyNext)
	if err != nil {
		return err
	}
	next.Signer.Wipe()
	// An instance whose config has no operator_signing_key_next goes on
	// signing with the old key: its next change is unusable once the
	// operator JWT drops that key, and the accounts it re-signs keep the
	// check below failing. Each instance says which key it signs with;
	// the provisioner's own creds may not ask (they publish no requests).
	if *adminCreds == "" {
		if def := filepath.Join(filepath.Dir(cfg.NATSCreds), bootstrap.AdminCredsFile); cfg.NATSCreds != "" {
			if _, err := os.Stat(def); err == nil {
				*adminCreds = def
			}
		}
	}
	var onOld []string
	if *adminCreds == "" {
		fmt.Fprintf(stdout, "not asking the instances which key they sign with: no --creds, and no %s beside nats_creds; check that every instance's prov.status.<instance> shows signing_key %s\n", bootstrap.AdminCredsFile, next.SignerKey)
	} else if onOld, err = instancesSignWith(ctx, cfg, *adminCreds, next.SignerKey, stdout); err != nil {
		return fmt.Errorf("operator finish: %w", err)
	}
	copies, checked, err := allSignedBy(ctx, nc, next.SignerKey, need)
	if err != nil {
		if len(onOld) > 0 {
			return fmt.Errorf("operator finish: %w. Instance(s) %s", err, strings.Join(onOld, ", "))
		}
		return fmt.Errorf("operator finish: %w", err)
	}
	if len(onOld) > 0 {
		// Every copy is the new key's, but such an instance signs its
		// next change with the old one.
		return fmt.Errorf("operator finish: instance(s) %s, not the new key %s: set operator_signing_key_next to its seed file (the key operator add-signing-key wrote) in their config, restart them, send prov.operator.rotate, and run operator finish again", strings.Join(onOld, ", "), next.SignerKey)
	}
	fmt.Fprintf(stdout, "checked %d servers: %s\n", len(checked), strings.Join(checked, ", "))
	// The preloads first: the config change makes the old key unused.
	for _, conf := range confs {
		n, err := updatePreload(conf, copies)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d preloaded accounts now hold their current JWTs\n", conf, n)
	}
	// init's copies of the system and service accounts beside the
	// operator JWT: a server configured from them later must preload JWTs
	// the servers still trust once the old key is gone.
	for _, name := range []string{bootstrap.SystemAccountJWTFile, bootstrap.ServiceAccountJWTFile} {
		file := filepath.Join(filepath.Dir(cfg.OperatorJWT), name)
		changed, err := updateAccountFile(file, copies)
		if err != nil {
			return err
		}
		if changed {
			fmt.Fprintf(stdout, "%s: now holds the account's current JWT\n", file)
		}
	}
	if err := swapSigningKey(*path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: operator_signing_key is now %s; restart the provisioner when convenient (it signs with that key already).\nLast: provisioner operator remove-signing-key ... --key OLD-KEY, and roll that operator JWT out.\n", *path, cfg.OperatorSigningKeyNext)
	return nil
}

// instancesSignWith asks every instance of the service (micro's
// $SRV.PING.<name>, each naming its instance in its metadata) for its
// status on its own subject, and fails naming those that sign with another
// operator signing key than key ("NAME signs with KEY"). An instance too
// old to say is listed, not returned.
func instancesSignWith(ctx context.Context, cfg *config.Config, creds, key string, stdout io.Writer) ([]string, error) {
	opt, err := credsOption("--creds", creds)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.NATSURL, opt, nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix))
	if err != nil {
		return nil, fmt.Errorf("connect to %s with %s to ask the instances: %w", config.RedactURL(cfg.NATSURL), creds, err)
	}
	defer nc.Close()
	pings, err := micro.ControlSubject(micro.PingVerb, cfg.ServiceName, "")
	if err != nil {
		return nil, err
	}
	inbox := nc.NewRespInbox()
	replies, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer replies.Unsubscribe()
	if err := nc.PublishRequest(pings, inbox, nil); err != nil {
		return nil, fmt.Errorf("ask the instances (%s): %w", pings, err)
	}
	// Every instance answers at once: the first answer is waited for up
	// to the resolver timeout, the others until none came for a while.
	var instances, unnamed []string
	wait := time.Duration(cfg.ResolverTimeout)
	if wait <= 0 {
		wait = resolver.DefaultTimeout
	}
	for {
		m, err := replies.NextMsg(wait)
		if err != nil {
			break
		}
		wait = 500 * time.Millisecond
		var ping micro.Ping
		if json.Unmarshal(m.Data, &ping) != nil {
			continue
		}
		if inst := ping.Metadata["instance"]; inst != "" {
			instances = append(instances, inst)
		} else {
			unnamed = append(unnamed, ping.ID)
		}
	}
	if len(instances)+len(unnamed) == 0 {
		// None runs (or the creds may not ask): none signs either; one
		// started later with a config left on the old key is not seen.
		fmt.Fprintf(stdout, "no instance of service %q answered %s (with %s): check that each instance's config has operator_signing_key_next\n", cfg.ServiceName, pings, creds)
		return nil, nil
	}
	// Instances given the same "instance" (one config copied to several)
	// all answer that name's status subject: each answer counts, not the
	// first, which may be one on the new key while another is on the old.
	counts := map[string]int{}
	for _, inst := range instances {
		counts[inst]++
	}
	slices.Sort(instances)
	instances = slices.Compact(instances)
	var old, asked []string
	for _, inst := range instances {
		subj := api.InstanceStatusSubject(cfg.SubjectPrefix, inst)
		// Bounded: an instance that stopped answering must not hang finish.
		rctx, cancel := context.WithTimeout(ctx, max(time.Duration(cfg.RequestTimeout), 5*time.Second))
		msgs, err := requestN(rctx, nc, subj, counts[inst])
		cancel()
		if err != nil {
			return nil, fmt.Errorf("ask instance %s (%s): %w: run operator finish again once it answers", inst, subj, err)
		}
		for _, m := range msgs {
			var st api.StatusReply
			if err := json.Unmarshal(m.Data, &st); err != nil {
				return nil, fmt.Errorf("instance %s's status: %w", inst, err)
			}
			switch {
			case st.SigningKey == "":
				asked = append(asked, inst+" (too old to say its key)")
			case st.SigningKey != key:
				old = append(old, inst+" signs with "+st.SigningKey)
			default:
				asked = append(asked, inst)
			}
		}
		if counts[inst] > 1 {
			fmt.Fprintf(stdout, "%d instances answer as instance %s: give each its own \"instance\" in its config (or leave it out)\n", counts[inst], inst)
		}
	}
	for _, id := range unnamed {
		asked = append(asked, "micro id "+id+" (too old to say its key)")
	}
	if len(old) == 0 {
		fmt.Fprintf(stdout, "asked %d instances which key they sign with (the new one, %s, for each that says): %s\n", len(asked), key, strings.Join(asked, ", "))
	}
	return old, nil
}

// requestN sends a request to subj and waits for n answers (the instances
// that share one name each answer), or fails with the first error answer
// or when ctx ends first.
func requestN(ctx context.Context, nc *nats.Conn, subj string, n int) ([]*nats.Msg, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subj, inbox, []byte("{}")); err != nil {
		return nil, err
	}
	var msgs []*nats.Msg
	for len(msgs) < n {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if len(msgs) > 0 {
				err = fmt.Errorf("%d of the %d instances of that name answered: %w", len(msgs), n, err)
			}
			return nil, err
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		if m.Header.Get(micro.ErrorCodeHeader) != "" {
			return nil, errors.New(m.Header.Get(micro.ErrorHeader))
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// allSignedBy checks that every copy of every account the servers hold
// is signed by key: each server's LIST, then a LOOKUP answered by every
// server. A server that was away through the rotation may hold the old
// key's versions while the others hold the new ones, so the first answer
// is not enough. A known server that does not answer stops the check.
// It returns every server's copy of each account ("" where a server with
// a full resolver holds none), and the names of the servers it checked.
// Every server named in need (name to the config naming it) must answer:
// one down when the client starts is not known to it.
func allSignedBy(ctx context.Context, nc *nats.Conn, key string, need map[string]string) (map[string][]string, []string, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rc, err := resolver.New(rctx, nc, resolver.Options{})
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	lists, err := rc.List(rctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list the servers' accounts: %w", err)
	}
	var accounts []string
	for _, srv := range rc.Servers() {
		list, ok := lists[srv.Name]
		if !ok {
			// Not a rotation's to fix: it re-signs nothing on a server
			// that does not answer.
			return nil, nil, fmt.Errorf("server %s did not list its accounts (it is down, or slow): bring it back, and run operator finish again", srv.Name)
		}
		accounts = append(accounts, list...)
	}
	for _, name := range slices.Sorted(maps.Keys(need)) {
		if _, ok := lists[name]; !ok {
			return nil, nil, fmt.Errorf("server %s (server_name in %s) did not list its accounts (it is down, or slow, or not reached through nats_url): bring it back, and run operator finish again", name, need[name])
		}
	}
	slices.Sort(accounts)
	accounts = slices.Compact(accounts)
	// A cache resolver (a leaf's, an edge's) answers LIST but no LOOKUP,
	// and this fresh client cannot tell it from a full one; a full
	// resolver answers every LOOKUP, empty when it holds no copy. Every
	// account is asked at once and the answers are counted per account:
	// waited for one by one, a cache resolver made each LOOKUP take the
	// resolver timeout, and counting the full resolvers by the first
	// LOOKUP's answers let one slow to answer that one go unheard in
	// every other.
	copies, err := lookupEvery(rctx, nc, accounts, len(lists))
	if err != nil {
		return nil, nil, err
	}
	full := 0
	for _, cs := range copies {
		full = max(full, len(cs))
	}
	if full == 0 && len(accounts) > 0 {
		return nil, nil, fmt.Errorf("no server answered a LOOKUP within %s (is there a server with a full resolver?)", resolver.DefaultTimeout)
	}
	var old []string
	for i, pub := range accounts {
		if len(copies[i]) < full {
			return nil, nil, fmt.Errorf("look up account %s: %d of the %d servers with a full resolver answered (one is down, or slow): run operator finish again once every server answers", pub, len(copies[i]), full)
		}
		for _, token := range copies[i] {
			c, err := jwt.DecodeAccountClaims(token)
			// A copy that is no account JWT is not one this check can judge.
			if err == nil && c.Issuer != key {
				old = append(old, pub+" signed by "+c.Issuer)
				break
			}
		}
	}
	if len(old) > 0 {
		// Sending the rotation again re-signs only what the store knows,
		// with the key in use: the key each account is signed by, and
		// what keeps it so, tell whether it can help.
		return nil, nil, fmt.Errorf("%d accounts on the servers are not signed by the new key %s yet (%s); send prov.operator.rotate again first. If they stay so: an instance whose config has no operator_signing_key_next keeps signing with the old key (set it in every instance's config and restart them; each logs \"operator signing key switched\" once it signs with the new key), and an account the store does not know (an orphan in prov.reconcile's report) is never re-signed (sign it again with the new key yourself, or delete it from the servers)", len(old), key, strings.Join(old[:min(3, len(old))], ", "))
	}
	byAccount := make(map[string][]string, len(accounts))
	for i, pub := range accounts {
		byAccount[pub] = copies[i]
	}
	return byAccount, slices.Sorted(maps.Keys(lists)), nil
}

// updatePreload replaces each preloaded account JWT in a server config by
// the newest of the servers' copies (allSignedBy's), and returns how many
// it replaced. Not the first server's answer to a LOOKUP: that server may
// hold none, or an older version (it was away through an update).
func updatePreload(file string, copies map[string][]string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	// The line of each entry the rewrite takes, by account.
	lines := map[string][]int{}
	for _, ix := range preloadEntry.FindAllSubmatchIndex(data, -1) {
		pub := string(data[ix[4]:ix[5]])
		lines[pub] = append(lines[pub], 1+bytes.Count(data[:ix[6]], []byte("\n")))
	}
	n := 0
	var failed error
	out := preloadEntry.ReplaceAllFunc(data, func(m []byte) []byte {
		sub := preloadEntry.FindSubmatch(m)
		pub := string(sub[2])
		token, _, err := provision.NewestCopy(pub, copies[pub])
		if err == nil && token == "" {
			err = errors.New("no server holds it (push it to the servers, or take it out of resolver_preload)")
		}
		if err != nil {
			failed = fmt.Errorf("%s: preloaded account %s: %w", file, pub, err)
			return m
		}
		n++
		return []byte(fmt.Sprintf("%s%s: %q", sub[1], pub, token))
	})
	if failed != nil {
		return 0, failed
	}
	// The accounts the server preloads from this file, and where each is
	// written, as its own parser reads them: an entry written otherwise
	// (`=`, single or no quotes, a quoted key) or kept in an included file
	// was left as it was, its old-key JWT for the server to load once the
	// old key is gone, and finish passed.
	// A variable only the server's environment sets reads as a
	// placeholder here too (clusterServerName): the preloads are written
	// out, not taken from variables.
	m, _, err := readServerConf(file, conf.ParseFileWithChecks)
	if err != nil {
		return 0, err
	}
	type token interface {
		Value() any
		Line() int
		SourceFile() string
	}
	for k, v := range m {
		if strings.ToLower(k) != "resolver_preload" { // as the server matches it
			continue
		}
		if tk, ok := v.(token); ok {
			v = tk.Value()
		}
		preload, _ := v.(map[string]any)
		for _, pub := range slices.Sorted(maps.Keys(preload)) {
			tk, ok := preload[pub].(token)
			if ok && sameFile(tk.SourceFile(), file) && slices.Contains(lines[pub], tk.Line()) {
				continue // rewritten above
			}
			// Already the current JWT: there is nothing to rewrite.
			if cur, _, err := provision.NewestCopy(pub, copies[pub]); ok && err == nil && cur != "" && tk.Value() == cur {
				continue
			}
			where := file
			if ok {
				where = fmt.Sprintf("%s line %d", tk.SourceFile(), tk.Line())
			}
			return 0, fmt.Errorf("%s: preloaded account %s (%s) is not written as operator finish rewrites it (`ACCOUNT: \"JWT\"` in the file itself), and does not hold the account's current JWT: write it so, or put its current JWT there yourself, and run operator finish again", file, pub, where)
		}
	}
	if bytes.Equal(out, data) {
		return n, nil
	}
	st, err := os.Stat(file)
	if err != nil {
		return 0, err
	}
	return n, safefile.Replace(file, out, st.Mode().Perm())
}

// updateAccountFile replaces the account JWT a file holds, as init wrote
// it, by the newest of the servers' copies (allSignedBy's), and reports
// whether it changed the file. A file that does not exist, or an account
// no server holds, is left alone.
func updateAccountFile(file string, copies map[string][]string) (bool, error) {
	raw, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return false, fmt.Errorf("%s: %w", file, err)
	}
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return false, fmt.Errorf("%s is not an account JWT: %w", file, err)
	}
	newest, _, err := provision.NewestCopy(c.Subject, copies[c.Subject])
	if err != nil {
		return false, fmt.Errorf("%s: account %s: %w", file, c.Subject, err)
	}
	if newest == "" || newest == token {
		return false, nil
	}
	data, err := jwt.DecorateJWT(newest)
	if err != nil {
		return false, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return false, err
	}
	return true, safefile.Replace(file, data, st.Mode().Perm())
}

// swapSigningKey rewrites a config file so that operator_signing_key takes
// the value of operator_signing_key_next, which goes. The rest of the file
// stays as it was, byte for byte: fields, order, layout and line endings
// (the members are found by the JSON decoder's offsets, not by line).
func swapSigningKey(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	members, err := topMembers(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	cur, nxt := -1, -1
	for i, m := range members {
		switch m.key {
		case "operator_signing_key":
			cur = i
		case "operator_signing_key_next":
			nxt = i
		}
	}
	if nxt < 0 {
		return fmt.Errorf("%s has no operator_signing_key_next", path)
	}
	if cur < 0 {
		return fmt.Errorf("%s has no operator_signing_key", path)
	}
	next := members[nxt].value(data)
	// The later edit first, so that the earlier one's offsets hold.
	edits := []func([]byte) []byte{
		func(b []byte) []byte { return slices.Concat(b[:members[cur].valStart], next, b[members[cur].end:]) },
		func(b []byte) []byte {
			// The member with its comma: the one before it, or, for the
			// first member, the one after it.
			if nxt > 0 {
				return slices.Concat(b[:members[nxt-1].end], b[members[nxt].end:])
			}
			if len(members) > 1 {
				return slices.Concat(b[:members[0].keyStart], b[members[1].keyStart:])
			}
			return slices.Concat(b[:members[0].keyStart], b[members[0].end:])
		},
	}
	if nxt > cur {
		edits[0], edits[1] = edits[1], edits[0]
	}
	out := data
	for _, e := range edits {
		out = e(out)
	}
	// What was meant: every field as it was but these two.
	var before, after map[string]json.RawMessage
	if err := json.Unmarshal(data, &before); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	before["operator_signing_key"] = next
	delete(before, "operator_signing_key_next")
	if err := json.Unmarshal(out, &after); err != nil || !maps.EqualFunc(before, after, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
		return fmt.Errorf("%s: could not rewrite it safely; set operator_signing_key to %s and remove operator_signing_key_next by hand", path, next)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return safefile.Replace(path, out, st.Mode().Perm())
}

// member is one member of a JSON object, by byte offsets: its key's
// opening quote, its value's first byte, and the byte after its value.
type member struct {
	key                     string
	keyStart, valStart, end int
}

func (m member) value(data []byte) []byte { return data[m.valStart:m.end] }

// topMembers lists the members of the JSON object data holds.
func topMembers(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	skip := func(off int, also string) int {
		for off < len(data) && strings.IndexByte(" \t\r\n"+also, data[off]) >= 0 {
			off++
		}
		return off
	}
	var ms []member
	for dec.More() {
		prev := int(dec.InputOffset())
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		afterKey := int(dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		ms = append(ms, member{key: key, keyStart: skip(prev, ","), valStart: skip(afterKey, ":"), end: int(dec.InputOffset())})
	}
	return ms, nil
}

// lookupEvery sends a LOOKUP of each account at once and returns, per
// account, the answers ("" where a server holds none) that arrived until
// each account had n of them or the resolver's default timeout passed.
func lookupEvery(ctx context.Context, nc *nats.Conn, accounts []string, n int) ([][]string, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	sub.SetPendingLimits(-1, -1) // every answer is read after the burst
	for i, pub := range accounts {
		if err := nc.PublishRequest("$SYS.REQ.ACCOUNT."+pub+".CLAIMS.LOOKUP", inbox+"."+strconv.Itoa(i), nil); err != nil {
			return nil, fmt.Errorf("look up account %s: %w", pub, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, resolver.DefaultTimeout)
	defer cancel()
	copies := make([][]string, len(accounts))
	complete := 0
	for complete < len(accounts) {
		m, err := sub.NextMsgWithContext(wctx)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			break // the servers that did not answer are counted by the caller
		}
		if err != nil {
			return nil, fmt.Errorf("look up the accounts: %w", err)
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, errors.New("look up the accounts: nothing answers a LOOKUP (is the server in operator mode with a full resolver?)")
		}
		i, err := strconv.Atoi(m.Subject[len(inbox)+1:])
		if err != nil || i < 0 || i >= len(accounts) || len(copies[i]) >= n {
			continue
		}
		copies[i] = append(copies[i], string(m.Data))
		if len(copies[i]) == n {
			complete++
		}
	}
	return copies, nil
}
