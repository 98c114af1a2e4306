// sidetrace: a tracing sidecar / edge proxy. See ARCHITECTURE.md §3 for the command line.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#if SIDETRACE_MIMALLOC
#include <mimalloc.h>
#endif

#include "config/inject.h"
#include "config/load.h"
#include "proxy/self_log.h"
#include "proxy/server.h"

namespace {

// Which allocator serves malloc: mimalloc only when its malloc is the one the process resolved
// (it must come before libc in the link order), else the system's.
std::string allocatorName() {
#if SIDETRACE_MIMALLOC
  using Malloc = void* (*)(size_t);
  if (reinterpret_cast<Malloc>(&std::malloc) == reinterpret_cast<Malloc>(&mi_malloc)) {
    const int v = mi_version();
    return "mimalloc " + std::to_string(v / 100) + "." + std::to_string(v / 10 % 10) + "." +
           std::to_string(v % 10);
  }
#endif
  return "system";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "inject") {
    return sidetrace::config::runInject(argc - 1, argv + 1);  // a YAML filter: no server
  }
  // Logs go to stderr; stdout belongs to the console exporter. Until the config says which
  // format, errors about the config itself are plain text.
  spdlog::set_default_logger(spdlog::stderr_color_mt("sidetrace"));
  using sidetrace::config::ConfigError;
  sidetrace::config::CliOptions cli;
  try {
    cli = sidetrace::config::parseArgs(argc, argv);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "sidetrace: %s\n\n%s", e.what(), sidetrace::config::usage().c_str());
    return 1;
  }
  if (cli.show_help) {
    std::fputs(sidetrace::config::usage().c_str(), stdout);
    return 0;
  }
  if (cli.show_version) {
    std::printf("sidetrace %s\nallocator: %s\n", SIDETRACE_VERSION, allocatorName().c_str());
    return 0;
  }
  sidetrace::config::ConfigPtr cfg;
  try {
    cfg = std::make_shared<const sidetrace::config::Config>(
        sidetrace::config::buildConfig(cli, sidetrace::config::processEnv()));
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "sidetrace: %s\n", e.what());
    return 1;
  }
  if (cli.validate_only) {
    std::printf("sidetrace: configuration is valid\n");
    return 0;
  }
  sidetrace::proxy::setupSelfLog(cfg->log_level, cfg->log_format);
  try {
    // A reload reads the same file, environment and flags again.
    return sidetrace::proxy::runServer(
        cfg, [cli] { return sidetrace::config::buildConfig(cli, sidetrace::config::processEnv()); },
        cli.ports_file.value_or(""));
  } catch (const std::exception& e) {
    spdlog::error("fatal: {}", e.what());
    return 2;
  }
}
