import Hummingbird
import NIOCore

/// The request context of the ingress: Hummingbird's basics plus the client's address, which the
/// unauthenticated rate limit keys on.
public struct IngressContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}
