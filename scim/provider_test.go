package scim_test

import (
	"net/http/httptest"
	"testing"

	"github.com/entrasync/entrasync/scim"
)

func TestProvider(t *testing.T) {
	for _, c := range []struct{ url, agent, want string }{
		{"/scim/v2/Users", "Microsoft.Identity.Provisioning", scim.ProviderEntra},
		{"/scim/v2/Users?aadOptscim062020", "", scim.ProviderEntra},
		{"/scim/v2/Users", "Okta SCIM Client 1.0.0", scim.ProviderOkta},
		{"/scim/v2/Users", "OneLogin SCIM", scim.ProviderOneLogin},
		{"/scim/v2/Users", "curl/8.5.0", scim.ProviderOther},
		{"/scim/v2/Users", "", scim.ProviderOther},
	} {
		r := httptest.NewRequest("GET", c.url, nil)
		r.Header.Set("User-Agent", c.agent)
		if got := scim.Provider(r); got != c.want {
			t.Errorf("Provider(%q, UA %q) = %q, want %q", c.url, c.agent, got, c.want)
		}
	}
}
