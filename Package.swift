// swift-tools-version:6.1
import PackageDescription

// Layout (see README "Architecture"):
//   C shims -> one safe Swift wrapper each -> Payments (pure domain) -> Store/Fleet (runtime)
//   -> Workers / Ingress -> executables of a few lines each.
let package = Package(
    name: "PayFleet",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "payfleet", targets: ["payfleet"]),
        .executable(name: "payfleet-ingress", targets: ["payfleet-ingress"]),
        .executable(name: "payfleet-authorize", targets: ["payfleet-authorize"]),
        .executable(name: "payfleet-capture", targets: ["payfleet-capture"]),
        .executable(name: "payfleet-timeout", targets: ["payfleet-timeout"]),
        .executable(name: "payfleet-expire", targets: ["payfleet-expire"]),
        .executable(name: "payfleet-clock", targets: ["payfleet-clock"]),
        .executable(name: "payfleet-settle", targets: ["payfleet-settle"]),
        .executable(name: "payfleet-archive", targets: ["payfleet-archive"]),
        .executable(name: "payfleet-export", targets: ["payfleet-export"]),
        .executable(name: "payfleet-bench", targets: ["payfleet-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // C clients from Debian, through pkg-config. Nothing above the Swift wrappers sees them.
        .systemLibrary(name: "CRabbitMQ", pkgConfig: "librabbitmq", providers: [.apt(["librabbitmq-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),

        .target(name: "AMQP", dependencies: ["CRabbitMQ", "ConnectionThread", .product(name: "Logging", package: "swift-log")]),
        // One dedicated thread per blocking C connection, bridged to async callers.
        .target(name: "ConnectionThread", dependencies: [.product(name: "DequeModule", package: "swift-collections")]),
        // UTC calendar arithmetic (days, months, timestamps) without Foundation's Calendar. No dependencies.
        .target(name: "CivilTime"),
        .target(name: "Postgres", dependencies: ["CLibPQ", "ConnectionThread", "CivilTime", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Redis", dependencies: ["CHiredis", "ConnectionThread", .product(name: "Logging", package: "swift-log")]),

        // The wire contract's envelope, shared by the ingress, the runtime and the CLI: CloudEvents,
        // JSON values, field errors, event routing, canonical JSON, message ids. No I/O.
        .target(name: "Contract", dependencies: ["CivilTime", .product(name: "Crypto", package: "swift-crypto")]),

        // Pure domain: money, currencies, tiers, limits arithmetic, routing, fees, states. No I/O.
        .target(name: "Payments", dependencies: ["Contract", "CivilTime", .product(name: "Crypto", package: "swift-crypto")]),

        // Persistence: migrations, SQL, Redis scripts.
        .target(name: "Store", dependencies: ["Contract", "Payments", "Postgres", "Redis",
                                              .product(name: "Logging", package: "swift-log"),
                                              .product(name: "Crypto", package: "swift-crypto")]),

        // The worker runtime every worker links: queues, handlers, outcomes, inbox and outbox,
        // retries and parking, time, periodic services, health and metrics. It knows no payments.
        .target(name: "Fleet", dependencies: [
            "AMQP", "ConnectionThread", "Postgres", "Redis", "Contract",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Tracing", package: "swift-distributed-tracing"),
        ]),
        // What the payment workers share: live routing/FX/channel settings, the limit sync,
        // channel adapters, tier changes.
        .target(name: "PaymentServices", dependencies: ["Fleet", "Store", "Payments", "Contract",
                                                        .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .target(name: "Workers", dependencies: ["Fleet", "PaymentServices", "Store", "Payments", "Contract",
                                                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                                .product(name: "Metrics", package: "swift-metrics")]),
        // Broker users for upstream systems, made through RabbitMQ's management HTTP API.
        .target(name: "BrokerAdmin", dependencies: ["AMQP", "Postgres", "Contract", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "Ingress", dependencies: [
            "Fleet", "PaymentServices", "Store", "Payments", "Contract", "BrokerAdmin",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),

        .executableTarget(name: "payfleet", dependencies: ["Fleet", "PaymentServices", "Store", "Redis", "Contract", "BrokerAdmin", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "payfleet-ingress", dependencies: ["Ingress", "Fleet"]),
        .executableTarget(name: "payfleet-authorize", dependencies: ["Workers", "Fleet", "PaymentServices"]),
        .executableTarget(name: "payfleet-capture", dependencies: ["Workers", "Fleet", "PaymentServices"]),
        .executableTarget(name: "payfleet-timeout", dependencies: ["Workers", "Fleet", "PaymentServices"]),
        .executableTarget(name: "payfleet-expire", dependencies: ["Workers", "Fleet", "PaymentServices"]),
        .executableTarget(name: "payfleet-clock", dependencies: ["Workers", "Fleet"]),
        .executableTarget(name: "payfleet-settle", dependencies: ["Workers", "Fleet"]),
        .executableTarget(name: "payfleet-archive", dependencies: ["Workers", "Fleet"]),
        .executableTarget(name: "payfleet-export", dependencies: ["Workers", "Fleet"]),

        // Load generator of Benchmarks/run.sh (raw broker baseline, end-to-end over AMQP).
        .executableTarget(name: "payfleet-bench", dependencies: ["Fleet", "PaymentServices", "Store", "Payments", "Contract", "AMQP", "Postgres", "Redis",
                                                                 .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Benchmarks/PayFleetBench"),

        // Shared test helpers (server URLs from the environment, subscribers, process spawning).
        .target(name: "PayFleetTesting", dependencies: ["AMQP", "Postgres", "Redis", "Fleet", "Store", "Contract", "Payments"], path: "Tests/PayFleetTesting"),

        // Unit tests: no servers.
        .testTarget(name: "PaymentsTests", dependencies: ["Payments", "Contract", "CivilTime", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "WorkersTests", dependencies: ["Workers", "Fleet", "Payments", "Contract"]),
        .testTarget(name: "OutcomeMappingTests", dependencies: ["Ingress", "Fleet", "Payments", "Store", "Contract"]),
        // Integration tests: real RabbitMQ, PostgreSQL and Redis started by deploy/local/test.sh.
        .testTarget(name: "AMQPTests", dependencies: ["AMQP", "PayFleetTesting"]),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "ConnectionThread", "PayFleetTesting"]),
        .testTarget(name: "RedisTests", dependencies: ["Redis", "PayFleetTesting"]),
        .testTarget(name: "FleetTests", dependencies: ["Fleet", "PaymentServices", "Store", "Workers", "Redis", "Postgres", "PayFleetTesting", "Contract", "Payments",
                                                  .product(name: "PropertyBased", package: "swift-property-based"),
                                                  .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        // End-to-end: spawns the real executables.
        .testTarget(name: "EndToEndTests", dependencies: ["PayFleetTesting", "Payments", "Contract", "Store", "Redis", "Postgres", "AMQP", "Fleet",
                                                        .product(name: "Crypto", package: "swift-crypto")]),
    ]
)
