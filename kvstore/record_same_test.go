package kvstore

import (
	"reflect"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// TestSameAccountSeesEveryField: Migrate calls an account the bucket
// holds "same" as the source's with sameAccount, which lists the fields
// one by one; one it leaves out (Settings did) makes a record that
// differs in it "same", and the bucket keeps its own. A field added to
// provision.Account and not to sameAccount fails here. Revision is no
// part of the record.
func TestSameAccountSeesEveryField(t *testing.T) {
	var variants func(v reflect.Value, name string, yield func(string))
	variants = func(v reflect.Value, name string, yield func(string)) {
		switch v.Kind() {
		case reflect.String:
			v.SetString("x")
			yield(name)
			v.SetString("")
		case reflect.Int, reflect.Int64:
			v.SetInt(1)
			yield(name)
			v.SetInt(0)
		case reflect.Bool:
			v.SetBool(true)
			yield(name)
			v.SetBool(false)
		case reflect.Struct:
			for i := range v.NumField() {
				variants(v.Field(i), name+"."+v.Type().Field(i).Name, yield)
			}
		case reflect.Slice:
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
			yield(name + "[0]")
			variants(v.Index(0), name+"[0]", yield)
			v.Set(reflect.Zero(v.Type()))
		default:
			t.Fatalf("field %s has kind %s, which this test does not set: extend it and sameAccount", name, v.Kind())
		}
	}
	typ := reflect.TypeFor[provision.Account]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Name == "Revision" {
			continue
		}
		var a provision.Account
		variants(reflect.ValueOf(&a).Elem().Field(i), f.Name, func(name string) {
			if sameAccount(a, provision.Account{}) || sameAccount(provision.Account{}, a) {
				t.Errorf("sameAccount does not tell accounts differing in %s apart", name)
			}
			if !sameAccount(a, a) {
				t.Errorf("sameAccount: an account with %s set differs from itself", name)
			}
		})
	}
}

// TestMigrateAgainSeesChangedSettings: a migrate run again after the
// source's self-service settings of an account changed, its JWT as it
// was, called the bucket's record "same" and left the bucket's old
// settings there without a word. It is not the same record.
func TestMigrateAgainSeesChangedSettings(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	src := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Bucket: "filestore", Instance: "src"})
	dst := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "dst"})
	ctx := bg(t)
	a := newAccount(t, "acme")
	a.JWT = accountJWTAt(t, a.PublicKey, "acme", time.Now().Unix())
	rev, err := src.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := Migrate(ctx, dst, src); err != nil || r.Accounts.Copied != 1 {
		t.Fatalf("first migrate: %+v, %v", r, err)
	}
	a.Settings = provision.AccountSettings{SelfService: true, Quota: 5, CallerRole: "admin"}
	if _, err := src.UpdateAccount(ctx, a, rev); err != nil {
		t.Fatal(err)
	}
	r, err := Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if r.Accounts.Same != 0 {
		t.Errorf("migrate again after the source's settings changed: %+v, the record called the same", r)
	}
	if got, err := dst.Account(ctx, a.PublicKey); err != nil {
		t.Fatal(err)
	} else if got.Settings != a.Settings && r.Accounts.Conflicts != 1 {
		t.Errorf("the bucket kept settings %+v (source %+v) and the run reported no conflict: %+v", got.Settings, a.Settings, r)
	}
}
