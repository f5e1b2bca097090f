// libFuzzer target: the config parser on arbitrary INI text. Every input must either load or be
// refused with a UserError; a config that loads must print (to_ini) as text that loads back to the
// same config. Anything else (another exception, a sanitizer report) is a finding.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "src/config/config.h"
#include "src/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  kl::Config config;
  try {
    config = kl::load_config_text(text, "fuzz input");
  } catch (const kl::UserError&) {
    return 0;
  }
  const std::string ini = config.to_ini();
  const kl::Config again = kl::load_config_text(ini, "to_ini of the fuzz input");  // must not throw
  if (again.to_ini() != ini) std::abort();
  return 0;
}
