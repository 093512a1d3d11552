use super::*;

/// An address in every refused class, and the words its refusal must say. The first three are issue 27's
/// findings (accepted by 0.4.0).
const REFUSED: &[(&str, &str)] = &[
    (
        "64:ff9b::a9fe:a9fe",
        "NAT64 (64:ff9b::/96) of 169.254.169.254, link-local",
    ),
    (
        "2002:a9fe:a9fe::1",
        "6to4 (2002::/16) of 169.254.169.254, link-local",
    ),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    // IPv4
    ("0.0.0.0", "this network"),
    ("0.1.2.3", "this network"),
    ("10.1.2.3", "private (10.0.0.0/8)"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.100.100.200", "carrier-grade NAT"),
    ("100.127.255.255", "carrier-grade NAT"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("172.16.0.1", "private (172.16.0.0/12)"),
    ("172.31.255.255", "private (172.16.0.0/12)"),
    ("192.0.0.8", "IETF protocol assignments"),
    ("192.0.0.170", "IETF protocol assignments"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("192.168.1.1", "private (192.168.0.0/16)"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("254.1.2.3", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("168.63.129.16", "Azure"),
    // IPv4-mapped: judged as the IPv4 address (the same socket)
    ("::ffff:10.0.0.1", "private (10.0.0.0/8)"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:198.18.0.1", "benchmarking"),
    // IPv4-compatible and IPv4-translated: deprecated, refused whatever they carry
    ("::8.8.8.8", "IPv4-compatible"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::ffff:0:8.8.8.8", "IPv4-translated"),
    // NAT64, well-known prefix: judged by the IPv4 address carried
    (
        "64:ff9b::127.0.0.1",
        "NAT64 (64:ff9b::/96) of 127.0.0.1, loopback",
    ),
    (
        "64:ff9b::10.0.0.1",
        "NAT64 (64:ff9b::/96) of 10.0.0.1, private",
    ),
    (
        "64:ff9b::c612:1",
        "NAT64 (64:ff9b::/96) of 198.18.0.1, benchmarking",
    ),
    // NAT64, local-use prefix: every reading of RFC 6052 (/96, /64, /56, /48) must be public
    (
        "64:ff9b:1::a9fe:a9fe",
        "NAT64 (64:ff9b:1::/48) of 169.254.169.254",
    ),
    (
        "64:ff9b:1:0:a9:fea9:fe00:0",
        "NAT64 (64:ff9b:1::/48) of 169.254.169.254",
    ),
    (
        "64:ff9b:1:a9:fe:a9fe::",
        "NAT64 (64:ff9b:1::/48) of 169.254.169.254",
    ),
    (
        "64:ff9b:1:a9fe:a9:fe00::",
        "NAT64 (64:ff9b:1::/48) of 169.254.169.254",
    ),
    // 6to4: judged by the IPv4 address carried
    ("2002:7f00:1::", "6to4 (2002::/16) of 127.0.0.1, loopback"),
    (
        "2002:c0a8:101::1",
        "6to4 (2002::/16) of 192.168.1.1, private",
    ),
    // IPv6
    ("::", "unspecified"),
    ("100::1", "discard-only"),
    ("2001::1", "Teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:2::1", "IETF protocol assignments"),
    ("2001:10::1", "IETF protocol assignments"),
    ("2001:1ff:ffff::1", "IETF protocol assignments"),
    ("2001:db8::1", "documentation (2001:db8::/32)"),
    ("3fff::1", "documentation (3fff::/20)"),
    ("fc00::1", "unique-local"),
    ("fd00:ec2::254", "unique-local"),
    ("fe80::1", "link-local (fe80::/10)"),
    ("febf::1", "link-local (fe80::/10)"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("5f00::1", "outside global unicast"),
    ("4000::1", "outside global unicast"),
    ("1234::1", "outside global unicast"),
];

/// This machine.
const LOOPBACK: &[&str] = &[
    "127.0.0.1",
    "127.1.2.3",
    "127.255.255.255",
    "::1",
    "::ffff:127.0.0.1",
];

/// Public, some of them at the edge of a refused range.
const PUBLIC: &[&str] = &[
    "8.8.8.8",
    "1.1.1.1",
    "196.201.214.200",
    "1.0.0.0",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.1",
    "192.31.196.1",
    "192.52.193.1",
    "192.167.255.255",
    "192.169.0.0",
    "192.175.48.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "168.63.129.17",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001::1",
    "2001:200::1",
    "2620:4f:8000::1",
    "3fff:1000::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "64:ff9b::8.8.8.8",
    "64:ff9b:1::808:808",
    "64:ff9b:1:abcd::808:808",
    "2002:808:808::1",
];

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("{text} is an address"))
}

#[test]
fn every_special_purpose_range_is_refused_and_named() {
    for (address, named) in REFUSED {
        let class = classify(ip(address));
        assert!(
            !matches!(class, Class::Public | Class::Loopback),
            "{address} is {class:?}"
        );
        for policy in [AddressPolicy::PublicOnly, AddressPolicy::PublicAndLoopback] {
            let refused = policy.check(ip(address)).expect_err(address);
            assert!(refused.contains(named), "{address}: {refused}");
        }
        assert_eq!(AddressPolicy::Anywhere.check(ip(address)), Ok(()));
    }
}

#[test]
fn loopback_is_allowed_only_when_loopback_is() {
    for address in LOOPBACK {
        assert_eq!(classify(ip(address)), Class::Loopback, "{address}");
        let refused = AddressPolicy::PublicOnly
            .check(ip(address))
            .expect_err(address);
        assert!(refused.contains("delivery.allow_loopback"), "{refused}");
        assert_eq!(AddressPolicy::PublicAndLoopback.check(ip(address)), Ok(()));
        assert_eq!(AddressPolicy::Anywhere.check(ip(address)), Ok(()));
    }
}

#[test]
fn public_addresses_are_allowed_by_every_policy() {
    for address in PUBLIC {
        assert_eq!(classify(ip(address)), Class::Public, "{address}");
        for policy in [
            AddressPolicy::PublicOnly,
            AddressPolicy::PublicAndLoopback,
            AddressPolicy::Anywhere,
        ] {
            assert_eq!(policy.check(ip(address)), Ok(()), "{address} {policy:?}");
        }
    }
}

#[test]
fn the_policy_follows_the_two_settings() {
    assert_eq!(AddressPolicy::new(false, false), AddressPolicy::PublicOnly);
    assert_eq!(
        AddressPolicy::new(false, true),
        AddressPolicy::PublicAndLoopback
    );
    assert_eq!(AddressPolicy::new(true, false), AddressPolicy::Anywhere);
    assert_eq!(AddressPolicy::new(true, true), AddressPolicy::Anywhere);
}

#[test]
fn literal_hosts_in_urls_are_judged() {
    let policy = AddressPolicy::PublicAndLoopback;
    for refused in [
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://198.18.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1:8080/",
        "https://[fd00:ec2::254]/",
    ] {
        assert!(policy.check_literal_host(refused).is_err(), "{refused}");
    }
    for allowed in [
        "http://127.0.0.1:9100/",
        "http://[::1]:9100/",
        "https://8.8.8.8/hooks",
        "https://orders.example.com/hooks",
    ] {
        assert_eq!(policy.check_literal_host(allowed), Ok(()), "{allowed}");
    }
    assert!(AddressPolicy::PublicOnly
        .check_literal_host("http://127.0.0.1:9100/")
        .is_err());
}

#[actix_web::test]
async fn a_name_is_refused_when_any_address_it_resolves_to_is() {
    let names = NamesTable::default();
    names.set("orders.example.com", &[ip("8.8.8.8"), ip("2606:4700::1")]);
    names.set("mixed.example.com", &[ip("8.8.8.8"), ip("10.0.0.1")]);
    names.set("local.example.com", &[ip("127.0.0.1")]);
    let policy = AddressPolicy::PublicAndLoopback;
    assert_eq!(
        policy
            .check_host("https://orders.example.com/", &names)
            .await,
        Ok(())
    );
    let refused = policy
        .check_host("https://mixed.example.com/", &names)
        .await
        .unwrap_err();
    assert!(
        refused
            .starts_with("mixed.example.com resolves to 10.0.0.1, which is private (10.0.0.0/8)"),
        "{refused}"
    );
    assert_eq!(
        policy
            .check_host("http://local.example.com:9100/", &names)
            .await,
        Ok(())
    );
    assert!(AddressPolicy::PublicOnly
        .check_host("http://local.example.com:9100/", &names)
        .await
        .is_err());
    // Not resolvable now: checked at every connection instead.
    assert_eq!(
        policy
            .check_host("https://unknown.example.com/", &names)
            .await,
        Ok(())
    );

    // The delivery client's resolver: the same verdicts, on the name's answer at connection time.
    let guarded = Guarded {
        policy,
        names: Arc::new(names),
    };
    let addresses = guarded.lookup("orders.example.com", 443).await.unwrap();
    assert_eq!(addresses.len(), 2);
    let refused = guarded.lookup("mixed.example.com", 443).await.unwrap_err();
    assert!(refused.to_string().contains("10.0.0.1"), "{refused}");
}

proptest::proptest! {
    /// What std's stable predicates call special, the table refuses too.
    #[test]
    fn std_special_ipv4_addresses_are_never_public(bits in proptest::prelude::any::<u32>()) {
        let address = Ipv4Addr::from(bits);
        let special = address.is_private()
            || address.is_loopback()
            || address.is_link_local()
            || address.is_broadcast()
            || address.is_documentation()
            || address.is_multicast()
            || address.is_unspecified();
        if special {
            proptest::prop_assert_ne!(classify_v4(address), Class::Public);
        }
        // An IPv4-mapped address is the IPv4 address itself.
        proptest::prop_assert_eq!(classify_v6(address.to_ipv6_mapped()), classify_v4(address));
        // A NAT64 or 6to4 address is public exactly when the IPv4 address it carries is.
        let public = classify_v4(address) == Class::Public;
        let [a, b, c, d] = address.octets();
        let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(bits));
        let six_to_four = Ipv6Addr::new(0x2002, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 0, 0, 0, 0, 1);
        proptest::prop_assert_eq!(classify_v6(nat64) == Class::Public, public);
        proptest::prop_assert_eq!(classify_v6(six_to_four) == Class::Public, public);
    }

    #[test]
    fn std_special_ipv6_addresses_are_never_public(bits in proptest::prelude::any::<u128>()) {
        let address = Ipv6Addr::from(bits);
        let special = address.is_loopback()
            || address.is_unspecified()
            || address.is_multicast()
            || address.is_unique_local()
            || address.is_unicast_link_local();
        if special {
            proptest::prop_assert_ne!(classify_v6(address), Class::Public);
        }
    }
}
