package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/entrasync/entrasync/config"
	"github.com/entrasync/entrasync/store"
)

var rekeyCmd = &command{name: "rekey", args: "--old-key-env VAR | --old-key-file F", flags: rekeyFlags, run: rekey, json: true,
	summary: "re-seal every stored Graph credential from an old secret key to the configured ENTRASYNC_SECRET_KEY"}

type rekeyOpts struct{ oldEnv, oldFile string }

func rekeyFlags(fs *flag.FlagSet) any {
	o := &rekeyOpts{}
	fs.StringVar(&o.oldEnv, "old-key-env", "", "name of an environment variable holding the old key (base64)")
	fs.StringVar(&o.oldFile, "old-key-file", "", "file holding the old key (base64)")
	return o
}

// oldKey reads the old key from where the flags say; like secret_key, it
// never comes from the command line itself.
func (o *rekeyOpts) oldKey(getenv func(string) string) ([]byte, error) {
	var text, from string
	switch {
	case (o.oldEnv == "") == (o.oldFile == ""):
		return nil, usagef("give the old key with one of --old-key-env VAR and --old-key-file F")
	case o.oldEnv != "":
		text, from = getenv(o.oldEnv), "environment variable "+o.oldEnv
		if text == "" {
			return nil, fmt.Errorf("%s is empty or unset; export the old key in it first", from)
		}
	default:
		b, err := os.ReadFile(o.oldFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read the old key: %v", err)
		}
		text, from = string(b), o.oldFile
	}
	key, err := config.ParseSecretKey(text)
	if err != nil {
		return nil, fmt.Errorf("the old key in %s: %v", from, err)
	}
	return key, nil
}

func rekey(e *env, inv *invocation) error {
	o := inv.flags.(*rekeyOpts)
	old, err := o.oldKey(e.getenv)
	if err != nil {
		return err
	}
	if len(inv.cfg.SecretKey) == 0 {
		return errors.New("ENTRASYNC_SECRET_KEY (setting secret_key) is not set: set it to the new key (`openssl rand -base64 32` makes one); the credentials are re-sealed with it")
	}
	db, err := openStore(e, inv.cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	var resealed int
	err = db.Write(e.ctx, func(tx *store.Tx) error {
		var err error
		resealed, err = tx.Rekey(old, inv.cfg.SecretKey)
		return err
	})
	if err != nil {
		return err
	}
	conns, err := db.GraphConnections(e.ctx)
	if err != nil {
		return err
	}
	if inv.json {
		return printJSON(e.stdout, map[string]int{"resealed": resealed, "connections": len(conns)})
	}
	fmt.Fprintf(e.stdout, "Re-sealed %d of %d Graph credential(s) with the configured ENTRASYNC_SECRET_KEY; the others already used it.\n",
		resealed, len(conns))
	return nil
}
