import BrokerAdmin
import Contract
import Hummingbird

extension IngressApp {
    /// `POST /api/v1/admin/merchants/{id}/broker-credentials` (CONTRACT §4): a broker user for that
    /// merchant's upstream systems, shown once.
    func addBrokerRoutes(to router: Router<IngressContext>) {
        router.group("api/v1").post("admin/merchants/:id/broker-credentials") { request, context in
            try self.requireAdmin(request)
            let merchantId = try context.parameters.require("id")
            guard try await self.pool.withConnection({ try await self.merchants.find(id: merchantId, on: $0) }) != nil else {
                throw Problem(.notFound, "not_found", "no merchant \(TextRules.forLog(merchantId, limit: 64))")
            }
            let credentials: BrokerUsers.Credentials
            do {
                credentials = try await self.brokerUsers.create(merchantId: merchantId, createdBy: "admin api")
            } catch let error as RabbitManagement.ManagementError {
                self.logger.error("could not make a broker user", metadata: ["merchant_id": "\(merchantId)", "error": "\(error)"])
                var problem = Problem(.serviceUnavailable, "broker_unavailable", "the broker's management API did not make the user; retry later")
                problem.headers[.retryAfter] = "5"
                throw problem
            }
            self.logger.info("broker user created", metadata: ["merchant_id": "\(merchantId)", "username": "\(credentials.username)"])
            return Self.json(.created, try CanonicalJSON.encode(credentials)).response
        }
    }
}
