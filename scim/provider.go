package scim

import (
	"net/http"
	"strings"
)

// Identity providers named in logs, metrics and activity. The set is
// closed, so a metric labelled with it stays small whatever clients send.
const (
	ProviderEntra     = "entra"
	ProviderOkta      = "okta"
	ProviderOneLogin  = "onelogin"
	ProviderJumpCloud = "jumpcloud"
	ProviderGoogle    = "google"
	ProviderPing      = "ping"
	ProviderOther     = "other"
)

// Providers lists every value Provider returns.
var Providers = []string{ProviderEntra, ProviderOkta, ProviderOneLogin, ProviderJumpCloud, ProviderGoogle, ProviderPing, ProviderOther}

// providerMarks maps a lower-cased User-Agent fragment to its provider.
// Entra ID's provisioning service names Microsoft or Azure AD in its agent;
// Okta sends "Okta SCIM Client".
var providerMarks = []struct{ mark, provider string }{
	{"microsoft", ProviderEntra}, {"azure", ProviderEntra}, {"aad", ProviderEntra}, {"entra", ProviderEntra},
	{"okta", ProviderOkta},
	{"onelogin", ProviderOneLogin},
	{"jumpcloud", ProviderJumpCloud},
	{"google", ProviderGoogle},
	{"pingidentity", ProviderPing}, {"pingone", ProviderPing}, {"pingfederate", ProviderPing},
}

// Provider names the identity provider that sent r, from its User-Agent
// and the request forms only one provider uses (Entra's Tenant URL flag
// ?aadOptscim062020). A client it does not know is "other".
func Provider(r *http.Request) string {
	if strings.Contains(strings.ToLower(r.URL.RawQuery), "aadoptscim062020") {
		return ProviderEntra
	}
	ua := strings.ToLower(r.Header.Get("User-Agent"))
	for _, m := range providerMarks {
		if strings.Contains(ua, m.mark) {
			return m.provider
		}
	}
	return ProviderOther
}
