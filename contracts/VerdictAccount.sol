// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title VerdictAccount: a smart account that moves funds only with a Verdict gateway's ALLOW.
/// @notice `execute(to, value, data, verdict, signature)` makes the call only when the EIP-712
/// `Verdict` signed by one of the owner's authorised signers says ALLOW, has not expired, was
/// never used on this account, and its `actionHash` is the hash of exactly this call: the account
/// rebuilds the action's RFC 8785 JSON from its own parameters,
///   {"account":"0x<this>","chain_id":<block.chainid>,"data":"0x<data>","to":"0x<to>",
///    "type":"evm_call","value":"<wei>"}
/// so one verdict moves funds from one account, on one chain, once. Each refusal is a named error.
contract VerdictAccount {
    /// The Verdict fields the caller supplies; `actionType` is "evm_call" and `actionHash` is
    /// recomputed by the account.
    struct Verdict {
        string actionId;
        bytes32 actionHash;
        string tenant;
        string agent;
        uint8 decision;
        uint64 policyVersion;
        bytes32 policyHash;
        uint64 issuedAt;
        uint64 expiresAt;
    }

    error NotOwner(address caller);
    error WrongChain(uint256 expected, uint256 actual);
    error ActionHashMismatch(bytes32 signed, bytes32 computed);
    error NotAllowed(uint8 decision);
    error VerdictExpired(uint64 expiresAt, uint256 blockTimestamp);
    error VerdictReplayed(string actionId);
    error InvalidSignature();
    error SignatureMalleable(bytes32 s);
    error UnauthorisedSigner(address recovered);
    error CallFailed(bytes returnData);
    error ZeroAddress();

    event Executed(bytes32 indexed actionIdHash, address indexed to, uint256 value, bytes32 actionHash, string actionId);
    event SignerAdded(address indexed signer);
    event SignerRemoved(address indexed signer);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant VERDICT_TYPEHASH = keccak256(
        "Verdict(string actionId,bytes32 actionHash,string tenant,string agent,string actionType,"
        "uint8 decision,uint64 policyVersion,bytes32 policyHash,uint64 issuedAt,uint64 expiresAt)"
    );
    bytes32 private constant EVM_CALL_HASH = keccak256("evm_call");
    // secp256k1n / 2: a larger s is the malleable twin of a valid signature (EIP-2).
    uint256 private constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// The tenant's EIP-712 domain (chain id and verifying contract as the gateway signs them).
    uint256 public immutable verdictChainId;
    address public immutable verifyingContract;
    bytes32 public immutable domainSeparator;

    address public owner;
    mapping(address => bool) public isSigner;
    /// keccak256(actionId) => used
    mapping(bytes32 => bool) public usedActionIds;

    constructor(address owner_, uint256 chainId_, address verifyingContract_, address[] memory signers_) {
        if (owner_ == address(0)) revert ZeroAddress();
        owner = owner_;
        verdictChainId = chainId_;
        verifyingContract = verifyingContract_;
        domainSeparator = keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("Verdict Gateway"), keccak256("1"), chainId_, verifyingContract_)
        );
        emit OwnershipTransferred(address(0), owner_);
        for (uint256 i = 0; i < signers_.length; i++) {
            _addSigner(signers_[i]);
        }
    }

    receive() external payable {}

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    function addSigner(address signer) external onlyOwner {
        _addSigner(signer);
    }

    function removeSigner(address signer) external onlyOwner {
        isSigner[signer] = false;
        emit SignerRemoved(signer);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function _addSigner(address signer) private {
        if (signer == address(0)) revert ZeroAddress();
        isSigner[signer] = true;
        emit SignerAdded(signer);
    }

    /// Make the call `to.call{value}(data)` if `verdict` and `signature` allow exactly it.
    function execute(
        address to,
        uint256 value,
        bytes calldata data,
        Verdict calldata verdict,
        bytes calldata signature
    ) external returns (bytes memory) {
        if (block.chainid != verdictChainId) revert WrongChain(verdictChainId, block.chainid);
        bytes32 computed = actionHashOf(to, value, data);
        if (verdict.actionHash != computed) revert ActionHashMismatch(verdict.actionHash, computed);
        if (verdict.decision != 1) revert NotAllowed(verdict.decision);
        if (block.timestamp > verdict.expiresAt) revert VerdictExpired(verdict.expiresAt, block.timestamp);
        bytes32 idHash = keccak256(bytes(verdict.actionId));
        if (usedActionIds[idHash]) revert VerdictReplayed(verdict.actionId);
        address signer = _recover(verdictDigest(verdict), signature);
        if (!isSigner[signer]) revert UnauthorisedSigner(signer);
        usedActionIds[idHash] = true;
        emit Executed(idHash, to, value, computed, verdict.actionId);
        (bool ok, bytes memory result) = to.call{value: value}(data);
        if (!ok) revert CallFailed(result);
        return result;
    }

    /// The EIP-712 digest of `verdict` (actionType "evm_call") under the tenant's domain.
    function verdictDigest(Verdict calldata verdict) public view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                VERDICT_TYPEHASH,
                keccak256(bytes(verdict.actionId)),
                verdict.actionHash,
                keccak256(bytes(verdict.tenant)),
                keccak256(bytes(verdict.agent)),
                EVM_CALL_HASH,
                verdict.decision,
                verdict.policyVersion,
                verdict.policyHash,
                verdict.issuedAt,
                verdict.expiresAt
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
    }

    /// keccak256 of the RFC 8785 JSON of the `evm_call` action this account would make.
    function actionHashOf(address to, uint256 value, bytes calldata data) public view returns (bytes32) {
        return keccak256(
            abi.encodePacked(
                '{"account":"',
                _hexAddress(address(this)),
                '","chain_id":',
                _decimal(block.chainid),
                ',"data":"',
                _hex(data),
                '","to":"',
                _hexAddress(to),
                '","type":"evm_call","value":"',
                _decimal(value),
                '"}'
            )
        );
    }

    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) revert InvalidSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_N) revert SignatureMalleable(s);
        if (v != 27 && v != 28) revert InvalidSignature();
        address signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
        return signer;
    }

    /// "0x" and the lowercase hex of `data` (assembly: a byte costs ~40 gas, not ~200).
    function _hex(bytes calldata data) private pure returns (bytes memory out) {
        uint256 length = data.length;
        out = new bytes(2 + 2 * length);
        assembly ("memory-safe") {
            let digits := "0123456789abcdef"
            let cursor := add(out, 32)
            mstore8(cursor, 0x30)
            mstore8(add(cursor, 1), 0x78)
            cursor := add(cursor, 2)
            for { let i := 0 } lt(i, length) { i := add(i, 1) } {
                let b := byte(0, calldataload(add(data.offset, i)))
                mstore8(cursor, byte(shr(4, b), digits))
                mstore8(add(cursor, 1), byte(and(b, 15), digits))
                cursor := add(cursor, 2)
            }
        }
    }

    /// "0x" and the 40 lowercase hex digits of `value`.
    function _hexAddress(address value) private pure returns (bytes memory out) {
        out = new bytes(42);
        assembly ("memory-safe") {
            let digits := "0123456789abcdef"
            let word := shl(96, value)
            let cursor := add(out, 32)
            mstore8(cursor, 0x30)
            mstore8(add(cursor, 1), 0x78)
            cursor := add(cursor, 2)
            for { let i := 0 } lt(i, 20) { i := add(i, 1) } {
                let b := byte(i, word)
                mstore8(cursor, byte(shr(4, b), digits))
                mstore8(add(cursor, 1), byte(and(b, 15), digits))
                cursor := add(cursor, 2)
            }
        }
    }

    /// The decimal digits of `value`, without leading zeros.
    function _decimal(uint256 value) private pure returns (bytes memory out) {
        if (value == 0) return "0";
        uint256 length;
        for (uint256 v = value; v != 0; v /= 10) length++;
        out = new bytes(length);
        assembly ("memory-safe") {
            for { let cursor := add(add(out, 32), length) } gt(value, 0) { value := div(value, 10) } {
                cursor := sub(cursor, 1)
                mstore8(cursor, add(48, mod(value, 10)))
            }
        }
    }
}
