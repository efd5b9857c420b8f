// keel/version.h — the versions keeld reports (/version on the client and peer ports,
// --version). One place, so every port tells the same.
#pragma once

namespace keel {

inline constexpr const char* keel_version = "0.1.0";
inline constexpr const char* etcd_server_version = "3.4.23";  // the etcd API level keel serves
inline constexpr const char* etcd_cluster_version = "3.4.0";

// {"etcdserver":"3.4.23","etcdcluster":"3.4.0","keel":"0.1.0"}: etcd's /version body
// plus keel's own version.
inline constexpr const char* version_json =
    "{\"etcdserver\":\"3.4.23\",\"etcdcluster\":\"3.4.0\",\"keel\":\"0.1.0\"}";

}  // namespace keel
